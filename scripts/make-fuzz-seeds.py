#!/usr/bin/env python3
"""Writes the seed corpus for FuzzXenstore: valid request streams in the harness's
[selector][length][bytes] chunk format (see Sources/FuzzHarnesses)."""
import os
import struct

out = os.path.join(os.path.dirname(__file__), "..", "FuzzTesting", "Corpus", "xenstore")
os.makedirs(out, exist_ok=True)


def msg(kind, payload, req=1, tx=0):
    return struct.pack("<IIII", kind, req, tx, len(payload)) + payload


def chunks(conn, data):
    result = b""
    for i in range(0, len(data), 255):
        part = data[i:i + 255]
        result += bytes([conn, len(part)]) + part
    return result


seeds = {
    "write-read": chunks(0, msg(11, b"/local/domain/5/name\0web") + msg(2, b"/local/domain/5/name\0", 2)),
    "perms": chunks(0, msg(12, b"/local/domain/5\0") + msg(14, b"/local/domain/5\0n5\0r0\0", 2))
    + chunks(2, msg(2, b"/local/domain/5\0", 3) + msg(11, b"data/x\0v", 4)),
    "transaction": chunks(1, msg(6, b"\0") + msg(11, b"/a\0x", 2, 1) + msg(7, b"T\0", 3, 1)),
    "watch": chunks(0, msg(4, b"/local\0tok\0") + msg(11, b"/local/domain/6/x\0y", 2) + msg(13, b"/local\0", 3))
    + chunks(3, msg(4, b"@releaseDomain\0r\0")),
    "introduce": chunks(0, msg(8, b"5\0100\07\0") + msg(17, b"5\0", 2) + msg(9, b"5\0", 3)) + bytes([0x80, 0]),
    "directory-part": chunks(0, msg(12, b"/d/a\0") + msg(12, b"/d/b\0", 2) + msg(22, b"/d\00\0", 3)),
    "quota": chunks(0, msg(25, b"\0") + msg(26, b"5\0nodes\03\0", 2) + msg(23, b"\0", 3)),
    "split": bytes([2, 3]) + msg(2, b"/\0")[:3] + bytes([2, 17]) + msg(2, b"/\0")[3:],
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {os.path.normpath(out)}")


def write_seeds(target, seeds):
    directory = os.path.join(os.path.dirname(__file__), "..", "FuzzTesting", "Corpus", target)
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {os.path.normpath(directory)}")


# FuzzConsoleRing: [op][...] — 0 store bytes, 1 store an index/flag, 2 service, 3 push input.
def console_index(which, value):
    return bytes([1, which]) + struct.pack("<I", value)


write_seeds("consolering", {
    "output-then-service": bytes([0]) + bytes([0, 16, 64]) + b"hello, console!\n" + console_index(3, 16)
    + bytes([2, 2]) + bytes([2, 2]),
    "slow-client": bytes([1]) + console_index(3, 2048) + bytes([2, 1 | (7 << 2)]) + bytes([2, 0]) + bytes([3, 200]),
    "bad-indices": bytes([0]) + console_index(3, 0x80000000) + bytes([2, 2]) + console_index(2, 5) + bytes([2, 2]),
    "flag-flips": bytes([0]) + console_index(4, 1) + bytes([2, 2]) + console_index(4, 0) + bytes([2, 2])
    + console_index(4, 1) + bytes([2, 2]),
    "input": bytes([0]) + bytes([3, 255]) + console_index(0, 100) + bytes([3, 255]),
})


# FuzzXenstoreRing: [op][...] — 0 guest writes [n] bytes, 1 stores a field, 2 service, 3 guest reads [n].
def guest_writes(data):
    result = b""
    for i in range(0, len(data), 255):
        part = data[i:i + 255]
        result += bytes([0, len(part)]) + part
    return result


write_seeds("xenstorering", {
    "read": guest_writes(msg(2, b"/local/domain/5\0")) + bytes([2]) + bytes([3, 255]),
    "write-watch": guest_writes(msg(11, b"data/x\0v") + msg(4, b"data\0t\0", 2)) + bytes([2, 3, 255, 2]),
    "long-message": guest_writes(msg(11, b"data/big\0" + b"x" * 3000)) + bytes([2]) * 8 + bytes([3, 255]),
    "oversize": guest_writes(struct.pack("<IIII", 2, 1, 0, 5000)) + bytes([2]),
    "bad-indices": guest_writes(msg(2, b"/\0")) + bytes([1, 1]) + struct.pack("<I", 0x80000000) + bytes([2]),
    "transaction": guest_writes(msg(6, b"\0") + msg(11, b"data/y\0z", 2, 1) + msg(7, b"T\0", 3, 1))
    + bytes([2, 3, 255]),
})


# FuzzHypervisorRequest: [u16 length][datagram]...; a datagram is [flag][json part].
def datagrams(*parts):
    return b"".join(struct.pack("<H", len(p)) + p for p in parts)


write_seeds("hypervisorrequest", {
    "identify": datagrams(b"\0" + b'{"identify":{}}'),
    "console-write": datagrams(b"\0" + b'{"consoleWrite":{"_0":"aGVsbG8K"}}'),
    "split": datagrams(b"\x01" + b'{"mapGrant":{"domid":', b"\0" + b'1,"ref":0,"readOnly":false}}'),
    "bind": datagrams(b"\0" + b'{"bindInterdomain":{"remote":0,"remotePort":1}}'),
    "garbage": datagrams(b"\x07junk", b"\0{", b"\x01" + b"[" * 100, b"\0]"),
})

# FuzzXLConfig: the toolstack's fixture configurations.
fixtures = os.path.join(os.path.dirname(__file__), "..", "Tests", "ToolstackTests", "Fixtures")
write_seeds("xlconfig", {
    name[:-4]: open(os.path.join(fixtures, name), "rb").read()
    for name in sorted(os.listdir(fixtures)) if name.endswith(".cfg")
})
