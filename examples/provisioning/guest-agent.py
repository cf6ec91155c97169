#!/usr/bin/env python3
"""Guest side of the Conch provisioning example (see README.md).

Run inside a guest as its "kernel" program:

    guest-agent.py OUTDIR

The channel org.conch.provision.0 shows up as
$CONCH_GUEST_DEV/xen-channel/org.conch.provision.0 (a link to a raw-mode pty).
The agent waits for it, answers the dom0 agent's requests (one command per
line, UTF-8):

    host: HELLO conch-provision/1        guest: READY domid=<domid>
    host: SET hostname <name>
    host: SET ssh-key <type> <base64> [comment]
    host: SET ip <address>
    host: COMMIT                         guest: OK applied hostname ssh-key ip
                                      or guest: ERROR <what is wrong>
    host: BYE (optional; the guest waits briefly for it before exiting)

On success it writes OUTDIR/hostname, OUTDIR/authorized_keys (mode 0600) and
OUTDIR/ip atomically and exits 0. On any error it writes nothing and exits 1.
Its standard output is the guest's console 0, so the progress messages end up
in the guest's boot log.
"""

import base64
import binascii
import errno
import ipaddress
import os
import re
import select
import struct
import sys
import tempfile
import termios
import time

CHANNEL_NAME = "org.conch.provision.0"
PROTOCOL_HELLO = "HELLO conch-provision/1"
MAX_LINE_BYTES = 4096
CHANNEL_WAIT_SECONDS = 30.0
CHANNEL_POLL_SECONDS = 0.05
# Once the host has said HELLO, each further line must arrive within this time.
LINE_TIMEOUT_SECONDS = 60.0
# After the final reply, how long to wait for the host's BYE before exiting.
# Exiting ends the domain; the wait gives the reply time to leave the ring.
LINGER_SECONDS = 2.0

KEYS = ("hostname", "ssh-key", "ip")
LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class ProtocolError(Exception):
    """Something to report to the host as `ERROR <message>`."""


class ChannelClosed(Exception):
    """The channel went away (the backend disconnected the device)."""


def console_newline():
    """Console 0 is a raw pty under Conch: emit CRLF there so lines start at
    column 0; plain LF when stdout is a pipe, a file or a cooked terminal."""
    try:
        attrs = termios.tcgetattr(sys.stdout.fileno())
    except (termios.error, OSError, ValueError):
        return "\n"
    oflag = attrs[1]
    if oflag & termios.OPOST and oflag & termios.ONLCR:
        return "\n"
    return "\r\n"


NEWLINE = console_newline()


def say(message):
    sys.stdout.write("provision agent: " + message + NEWLINE)
    sys.stdout.flush()


class LineChannel:
    """Line I/O on the channel's pty: bytes are read as they come and split
    into lines here, so no stdio buffering gets in the way."""

    def __init__(self, fd):
        self.fd = fd
        self.buffer = b""

    def send(self, line):
        data = (line + "\n").encode("utf-8")
        while data:
            try:
                written = os.write(self.fd, data)
            except InterruptedError:
                continue
            data = data[written:]

    def read_line(self, timeout=None):
        """The next line without its newline (a trailing CR is dropped too),
        or None when `timeout` seconds pass without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            newline = self.buffer.find(b"\n")
            if newline >= 0:
                raw = self.buffer[:newline]
                self.buffer = self.buffer[newline + 1:]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                if len(raw) > MAX_LINE_BYTES:
                    raise ProtocolError(f"line too long: {len(raw)} bytes (the limit is {MAX_LINE_BYTES})")
                try:
                    return raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError("line is not valid UTF-8") from None
            if len(self.buffer) > MAX_LINE_BYTES + 1:
                raise ProtocolError(f"line too long: more than {MAX_LINE_BYTES} bytes without a newline")
            wait = None
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return None
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except InterruptedError:
                continue
            except OSError as error:
                if error.errno == errno.EIO:
                    raise ChannelClosed() from None
                raise
            if not chunk:
                raise ChannelClosed()
            self.buffer += chunk


def wait_for_channel(path):
    deadline = time.monotonic() + CHANNEL_WAIT_SECONDS
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(CHANNEL_POLL_SECONDS)
    return True


# ---------------------------------------------------------------- validation

def check_hostname(value):
    if not value:
        raise ProtocolError("hostname is empty")
    if len(value) > 253:
        raise ProtocolError(f"hostname is {len(value)} characters long (at most 253 allowed)")
    for label in value.split("."):
        if not label:
            raise ProtocolError(f"hostname '{value}' has an empty label")
        if len(label) > 63:
            raise ProtocolError(f"hostname label '{label}' is {len(label)} characters long (at most 63 allowed)")
        if label.startswith("-") or label.endswith("-"):
            raise ProtocolError(f"hostname label '{label}' starts or ends with '-'")
        if not LABEL.match(label):
            raise ProtocolError(
                f"hostname label '{label}' contains a character other than letters, digits and '-'"
            )


def check_ip(value):
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ProtocolError(f"ip '{value}' is not a valid IPv4 or IPv6 address") from None


def check_ssh_key(value):
    parts = value.split(None, 2)
    if len(parts) < 2:
        raise ProtocolError("ssh-key must be '<type> <base64> [comment]'")
    key_type, data = parts[0], parts[1]
    if not (key_type.startswith("ssh-") or key_type.startswith("ecdsa-")):
        raise ProtocolError(f"ssh-key type '{key_type}' is not an SSH key type (ssh-… or ecdsa-…)")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("ssh-key data is not valid base64") from None
    if not blob:
        raise ProtocolError("ssh-key data is empty")
    if len(blob) < 4:
        raise ProtocolError("ssh-key data is too short to be a key")
    (length,) = struct.unpack(">I", blob[:4])
    embedded = blob[4:4 + length]
    # The key data starts with its own type name (RFC 4253, section 6.6).
    if len(embedded) != length or embedded != key_type.encode("ascii", "replace"):
        raise ProtocolError(f"ssh-key data does not hold a '{key_type}' key")


CHECKS = {"hostname": check_hostname, "ssh-key": check_ssh_key, "ip": check_ip}


# ------------------------------------------------------------------ applying

def write_files(outdir, values):
    """Writes every file to a temporary name first and renames them only once
    all three are on disk, so a failure leaves the old files in place."""
    targets = [
        ("hostname", values["hostname"], 0o644),
        ("authorized_keys", values["ssh-key"], 0o600),
        ("ip", values["ip"], 0o644),
    ]
    os.makedirs(outdir, exist_ok=True)
    staged = []
    try:
        for name, value, mode in targets:
            fd, temp = tempfile.mkstemp(dir=outdir, prefix=f".{name}.")
            staged.append((temp, os.path.join(outdir, name)))
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), mode)
                handle.write(value + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        for temp, final in staged:
            os.replace(temp, final)
        staged = []
    finally:
        for temp, _ in staged:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass


def linger(channel):
    """Waits (briefly) for the host's BYE so the last reply is delivered
    before the guest exits and the domain goes away."""
    deadline = time.monotonic() + LINGER_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            line = channel.read_line(timeout=remaining)
        except (ProtocolError, ChannelClosed, OSError):
            return
        if line is None or line == "BYE":
            return


def serve(channel, domid, outdir):
    """Runs one provisioning exchange; returns the exit status."""
    line = channel.read_line()
    if line != PROTOCOL_HELLO:
        raise ProtocolError(f"expected {PROTOCOL_HELLO}")
    channel.send(f"READY domid={domid}")
    say("host said hello, waiting for settings")

    values = {}
    while True:
        line = channel.read_line(timeout=LINE_TIMEOUT_SECONDS)
        if line is None:
            raise ProtocolError(f"no command from the host for {int(LINE_TIMEOUT_SECONDS)} seconds")
        if line == "COMMIT":
            break
        if line.startswith("SET "):
            fields = line[4:].split(" ", 1)
            key = fields[0]
            if key not in CHECKS:
                raise ProtocolError(f"unknown key '{key}' (known keys: {', '.join(KEYS)})")
            value = fields[1].strip() if len(fields) > 1 else ""
            if not value:
                raise ProtocolError(f"{key} has no value (write SET {key} <value>)")
            if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in value):
                raise ProtocolError(f"{key} contains a control character")
            values[key] = value
            continue
        command = line.split(" ", 1)[0] if line else "(empty line)"
        raise ProtocolError(f"unexpected command '{command}' (expected SET or COMMIT)")

    missing = [key for key in KEYS if key not in values]
    if missing:
        raise ProtocolError("missing " + ", ".join(missing) + " (send SET for each before COMMIT)")
    for key in KEYS:
        CHECKS[key](values[key])

    try:
        write_files(outdir, values)
    except OSError as error:
        raise ProtocolError(f"cannot write to {outdir}: {error.strerror or error}") from None

    channel.send("OK applied " + " ".join(KEYS))
    key_parts = values["ssh-key"].split(None, 2)
    comment = f" ({key_parts[2]})" if len(key_parts) > 2 else ""
    say(f"applied hostname={values['hostname']} ip={values['ip']} ssh-key={key_parts[0]}{comment}")
    say(f"wrote {outdir}/hostname, {outdir}/authorized_keys, {outdir}/ip")
    return 0


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write(f"usage: {os.path.basename(argv[0])} OUTDIR" + NEWLINE)
        return 2
    outdir = argv[1]
    dev = os.environ.get("CONCH_GUEST_DEV")
    domid = os.environ.get("CONCH_DOMID", "?")
    if not dev:
        say("CONCH_GUEST_DEV is not set: run me as a Conch guest's kernel")
        return 1
    path = os.path.join(dev, "xen-channel", CHANNEL_NAME)

    say(f"domain {domid}: waiting for channel {CHANNEL_NAME} at {path}")
    if not wait_for_channel(path):
        say(f"channel {CHANNEL_NAME} did not appear within {int(CHANNEL_WAIT_SECONDS)} seconds; giving up")
        return 1
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError as error:
        say(f"cannot open {path}: {error.strerror}")
        return 1
    say(f"connected to {CHANNEL_NAME}, waiting for the host")

    channel = LineChannel(fd)
    try:
        status = serve(channel, domid, outdir)
    except ProtocolError as error:
        say(f"error: {error}")
        try:
            channel.send(f"ERROR {error}")
        except OSError:
            pass
        status = 1
    except ChannelClosed:
        say("the channel was closed before provisioning finished")
        return 1
    linger(channel)
    os.close(fd)
    say("done" if status == 0 else "nothing applied")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
