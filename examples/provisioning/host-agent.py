#!/usr/bin/env python3
"""dom0 side of the Conch provisioning example (see README.md).

    host-agent.py --socket PATH --hostname H --ssh-key KEY --ip A [--timeout S]

Connects to the Unix socket that consoled publishes for a channel with
`connection=socket` (retrying until it exists and accepts), then provisions
the guest agent behind it:

    HELLO conch-provision/1   -> READY domid=<d>
    SET hostname H, SET ssh-key KEY, SET ip A, COMMIT
                              -> OK applied hostname ssh-key ip | ERROR <why>
    BYE

Exit status: 0 when the guest replied OK, 1 when it replied ERROR, 2 on a
timeout, a connection problem or an unexpected reply.
"""

import argparse
import errno
import os
import socket
import stat
import sys
import time

PROTOCOL_HELLO = "HELLO conch-provision/1"
RETRY_SECONDS = 0.05
MAX_LINE_BYTES = 65536
# consoled serves one client per channel; later ones get this line and are closed.
BUSY_PREFIX = "conch: channel '"

EXIT_OK = 0
EXIT_GUEST_ERROR = 1
EXIT_CONNECTION = 2


class Failure(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Connection:
    def __init__(self, sock, path, deadline):
        self.sock = sock
        self.path = path
        self.deadline = deadline
        self.buffer = b""

    def send(self, line):
        try:
            self.sock.sendall((line + "\n").encode("utf-8"))
        except OSError as error:
            # consoled may already have said "busy" and closed: report that
            # rather than the broken pipe it causes.
            self.check_busy()
            raise Failure(
                EXIT_CONNECTION, f"{self.path}: cannot send to the channel: {error.strerror or error}"
            ) from None

    def check_busy(self):
        try:
            self.sock.settimeout(0.2)
            while b"\n" not in self.buffer:
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                self.buffer += chunk
        except OSError:
            pass
        line = self.buffer.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
        if line.startswith(BUSY_PREFIX) and " is busy" in line:
            raise self.busy(line)

    def busy(self, line):
        return Failure(
            EXIT_CONNECTION,
            f"{self.path}: the channel is busy: consoled serves one client at a time and another "
            f"client is attached ({line})",
        )

    def read_line(self, waiting_for):
        while True:
            newline = self.buffer.find(b"\n")
            if newline >= 0:
                raw = self.buffer[:newline]
                self.buffer = self.buffer[newline + 1:]
                line = raw.decode("utf-8", "replace").rstrip("\r")
                if line.startswith(BUSY_PREFIX) and " is busy" in line:
                    raise self.busy(line)
                return line
            if len(self.buffer) > MAX_LINE_BYTES:
                raise Failure(EXIT_CONNECTION, f"{self.path}: reply line too long while waiting for {waiting_for}")
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise Failure(EXIT_CONNECTION, f"{self.path}: timed out waiting for {waiting_for}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                raise Failure(EXIT_CONNECTION, f"{self.path}: timed out waiting for {waiting_for}") from None
            except OSError as error:
                raise Failure(
                    EXIT_CONNECTION,
                    f"{self.path}: connection failed while waiting for {waiting_for}: {error.strerror or error}",
                ) from None
            if not chunk:
                raise Failure(EXIT_CONNECTION, f"{self.path}: connection closed while waiting for {waiting_for}")
            self.buffer += chunk


def connect(path, deadline):
    """Connects, retrying while the socket is missing or refuses (consoled
    publishes it once the guest's channel is up)."""
    last = "it does not exist"
    while True:
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise Failure(EXIT_CONNECTION, f"cannot connect to {path}: it is not a socket")
        except OSError:
            pass  # missing (or unreadable): connect() below says which
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as error:
            last = "it does not exist" if isinstance(error, FileNotFoundError) else "connection refused"
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.ECONNREFUSED, errno.ENOENT):
                last = error.strerror
            else:
                sock.close()
                raise Failure(EXIT_CONNECTION, f"cannot connect to {path}: {error.strerror or error}") from None
        sock.close()
        if time.monotonic() + RETRY_SECONDS > deadline:
            raise Failure(EXIT_CONNECTION, f"timed out connecting to {path} ({last})")
        time.sleep(RETRY_SECONDS)


def provision(args):
    deadline = time.monotonic() + args.timeout
    sock = connect(args.socket, deadline)
    conn = Connection(sock, args.socket, deadline)
    try:
        conn.send(PROTOCOL_HELLO)
        reply = conn.read_line("the guest's READY")
        if reply.startswith("ERROR"):
            raise Failure(EXIT_GUEST_ERROR, reply)
        if not reply.startswith("READY"):
            raise Failure(EXIT_CONNECTION, f"{args.socket}: unexpected reply to HELLO: {reply!r}")
        domid = "?"
        for field in reply.split()[1:]:
            if field.startswith("domid="):
                domid = field[len("domid="):]

        conn.send(f"SET hostname {args.hostname}")
        conn.send(f"SET ssh-key {args.ssh_key}")
        conn.send(f"SET ip {args.ip}")
        conn.send("COMMIT")
        reply = conn.read_line("the guest's reply to COMMIT")
        try:
            conn.send("BYE")
        except Failure:
            pass
        if reply.startswith("OK"):
            print(f"provisioned domid={domid}: {reply}")
            return EXIT_OK
        if reply.startswith("ERROR"):
            raise Failure(EXIT_GUEST_ERROR, reply)
        raise Failure(EXIT_CONNECTION, f"{args.socket}: unexpected reply to COMMIT: {reply!r}")
    finally:
        sock.close()


def single_line(name):
    def check(value):
        if "\n" in value or "\r" in value:
            raise argparse.ArgumentTypeError(f"{name} must be a single line")
        return value
    return check


def main():
    parser = argparse.ArgumentParser(
        description="Provision a Conch guest over the org.conch.provision.0 PV channel.",
        epilog="Exit status: 0 OK, 1 the guest refused (ERROR), 2 timeout or connection problem.",
    )
    parser.add_argument("--socket", required=True, metavar="PATH", help="the channel's Unix socket (path= in the config)")
    parser.add_argument("--hostname", required=True, type=single_line("--hostname"))
    parser.add_argument("--ssh-key", required=True, type=single_line("--ssh-key"),
                        help="an OpenSSH public key: '<type> <base64> [comment]'")
    parser.add_argument("--ip", required=True, type=single_line("--ip"))
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="give up after this long, connecting included (default 30)")
    args = parser.parse_args()
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    try:
        return provision(args)
    except Failure as failure:
        if failure.status == EXIT_GUEST_ERROR:
            print(f"provisioning failed: the guest replied: {failure.message}", file=sys.stderr)
        else:
            print(f"host-agent: {failure.message}", file=sys.stderr)
        return failure.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
