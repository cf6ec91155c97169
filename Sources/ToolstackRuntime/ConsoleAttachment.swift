//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemExtras
import XenABI
import XenHypervisor

#if canImport(Glibc)
import Glibc
#endif

/// Finds a console's host end in xenstore and relays a terminal (or stdin and
/// stdout) to it.
public enum ConsoleAttachment {
    public enum Target: Sendable {
        case primary
        case secondary(Int)
        case channel(String)
    }

    /// The escape byte, Ctrl-] (as xl console and xenconsole use).
    static let escape: UInt8 = 0x1d

    /// Attaches this process's terminal (or stdin and stdout) to a console until
    /// Ctrl-], the console closing, or — without a terminal — stdin ending and
    /// `linger` seconds of quiet.
    public static func attach(host: HostConnection, domain: DomainInfo, target: Target, linger: Double) async throws {
        // Console 0: what was written before we came, from consoled's history (the pty
        // itself holds only what fitted in its buffer, and consoled discards that).
        if case .primary = target {
            let history = try? UnixSocketPath.exchange(
                host.runDirectory.consoledControlSocket,
                request: Array("history \(domain.domid.rawValue)\n".utf8)
            )
            if let history, !history.starts(with: Array("error:".utf8)) {
                _ = writeAll(STDOUT_FILENO, history[...])
            }
        }
        let descriptor = try await open(host: host, domain: domain, target: target)
        defer { close(descriptor) }
        let terminal = isatty(STDIN_FILENO) == 1
        var saved = termios()
        if terminal {
            tcgetattr(STDIN_FILENO, &saved)
            var raw = saved
            cfmakeraw(&raw)
            tcsetattr(STDIN_FILENO, TCSANOW, &raw)
        }
        defer { if terminal { tcsetattr(STDIN_FILENO, TCSANOW, &saved) } }
        relay(descriptor, terminal: terminal, lingerMilliseconds: Int32(max(0, linger) * 1000))
    }

    /// The console's pty, opened, or its socket, connected.
    ///
    /// Every path comes from somewhere the guest cannot write (XSA-178): the
    /// frontend directory is derived from the domid and devid, a channel is found
    /// by name in the toolstack's `/libxl` copy, and its socket path is taken from
    /// there. The pty path is the one node read from the frontend directory (a
    /// node consoled wrote and the guest can only read), and it is opened only if
    /// it is a pty.
    public static func open(host: HostConnection, domain: DomainInfo, target: Target) async throws -> Int32 {
        let d = domain.domid
        let devid: Int
        let label: String
        switch target {
        case .primary:
            devid = 0
            label = "console 0"
        case .secondary(let number):
            devid = number
            label = "console \(number)"
        case .channel(let name):
            var found: Int?
            for entry in (try? await host.store.directory(ConsoleLayout.toolstackCopies(d))) ?? [] {
                guard let number = Int(entry), number > 0 else { continue }
                let copy = ConsoleLayout.toolstackCopy(d, devid: number)
                if (try? await host.store.readString(copy + "/name")) == name { found = number }
            }
            guard let found else {
                throw ToolstackError(
                    "domain \(domain.name) has no channel named '\(name)': see `conch channel-list \(d)`"
                )
            }
            devid = found
            label = "channel \(name)"
        }
        let frontend = ConsoleLayout.frontend(d, devid: devid)
        guard (try? await host.store.directory(frontend)) != nil else {
            throw ToolstackError("domain \(domain.name) has no \(label)")
        }
        if devid > 0 {
            let copy = ConsoleLayout.toolstackCopy(d, devid: devid)
            if (try? await host.store.readString(copy + "/connection")) == "socket" {
                let path = (try? await host.store.readString(copy + "/path")) ?? ""
                return try connectChannelSocket(path, label: label)
            }
        }
        guard let tty = try? await host.store.readString(frontend + "/tty"), !tty.isEmpty else {
            throw ToolstackError("\(label) of \(domain.name) has no pty yet: is consoled running (`conch up`)?")
        }
        return try openPty(tty, label: label)
    }

    /// Connects to a channel's socket, if it is a socket of this user's (or root's):
    /// the keeper's, not something another user left at that path.
    static func connectChannelSocket(_ path: String, label: String) throws -> Int32 {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw ToolstackError("\(label)'s socket \(path) does not exist: is consoled running (`conch up`)?")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK, info.st_uid == geteuid() || info.st_uid == 0 else {
            throw ToolstackError("\(path) is not \(label)'s socket (not a socket of yours): refusing to connect")
        }
        do {
            return try UnixSocketPath.connect(path)
        } catch {
            throw ToolstackError("cannot connect to \(label)'s socket \(path) (\(error)): is consoled running?")
        }
    }

    /// Opens a pty slave; anything that is not one (a symbolic link, a file named
    /// in a node somebody else wrote) is refused.
    static func openPty(_ tty: String, label: String) throws -> Int32 {
        let fd = Glibc.open(tty, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw ToolstackError("cannot open \(tty): \(String(cString: strerror(errno)))") }
        var info = stat()
        // Unix98 pty slaves are character devices with majors 136 to 143.
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFCHR, (136...143).contains((info.st_rdev >> 8) & 0xfff)
        else {
            close(fd)
            throw ToolstackError("\(tty), the pty of \(label), is not a pty: refusing to use it")
        }
        return fd
    }

    /// Moves bytes both ways until Ctrl-] (terminal), the console closing, or —
    /// without a terminal — stdin ending and the console going quiet.
    static func relay(_ console: Int32, terminal: Bool, lingerMilliseconds: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var inputOpen = true
        while true {
            var fds = [
                pollfd(fd: console, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inputOpen ? STDIN_FILENO : -1, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, 2, inputOpen ? -1 : lingerMilliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if ready == 0 { return }  // quiet for the linger time after stdin ended
            if fds[0].revents != 0 {
                let got = read(console, &buffer, buffer.count)
                guard got > 0 else { return }  // closed
                guard writeAll(STDOUT_FILENO, buffer[..<got]) else { return }
            }
            if inputOpen, fds[1].revents != 0 {
                let got = read(STDIN_FILENO, &buffer, buffer.count)
                if got <= 0 {
                    inputOpen = false
                    continue
                }
                var chunk = buffer[..<got]
                if terminal, let at = chunk.firstIndex(of: escape) {
                    chunk = chunk[..<at]
                    _ = writeAll(console, chunk)
                    return
                }
                guard writeAll(console, chunk) else { return }
            }
        }
    }
}
