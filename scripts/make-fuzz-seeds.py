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
