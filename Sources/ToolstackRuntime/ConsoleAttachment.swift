//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import SystemExtras
import XenABI
import XenHypervisor
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// Finds a console's host end in xenstore and relays a terminal (or stdin and
/// stdout) to it, as `hvc0` behaves under `xl console`: one session per console,
/// an escape key that detaches, and a session that follows consoled to a new pty
/// after a restart.
public enum ConsoleAttachment {
    public enum Target: Sendable {
        case primary
        case secondary(Int)
        case channel(String)
    }

    public struct Options: Sendable {
        /// Without a terminal: seconds of quiet after stdin ends before exiting.
        public var linger: Double
        /// The byte that detaches when typed alone (Ctrl-], as xl console and
        /// xenconsole use); nil: none.
        public var escape: UInt8?
        /// Take the console over from another session instead of refusing.
        public var force: Bool
        /// Show the guest's ESC bytes as `.`: its escape sequences cannot drive the
        /// operator's terminal (retitle it, remap keys, answer queries).
        public var replaceEscape: Bool

        public init(
            linger: Double = 1,
            escape: UInt8? = Self.defaultEscape,
            force: Bool = false,
            replaceEscape: Bool = false
        ) {
            self.linger = linger
            self.escape = escape
            self.force = force
            self.replaceEscape = replaceEscape
        }

        public static let defaultEscape: UInt8 = 0x1d

        /// Parses an escape key as `-e` takes it: `^]`, `^A` (caret notation), a
        /// single character, or `none`.
        public static func escape(parsing text: String) -> UInt8?? {
            if text == "none" { return .some(nil) }
            let bytes = Array(text.utf8)
            if bytes.count == 2, bytes[0] == UInt8(ascii: "^") {
                let key = bytes[1] == UInt8(ascii: "?") ? 0x7f : bytes[1] & 0x1f
                return bytes[1] >= 0x3f && bytes[1] <= 0x7e ? .some(key) : nil
            }
            if bytes.count == 1, bytes[0] < 0x80 { return .some(bytes[0]) }
            return nil
        }

        /// How the key is written: `^]`.
        public static func describe(_ key: UInt8) -> String {
            if key == 0x7f { return "^?" }
            if key < 0x20 { return "^" + String(UnicodeScalar(key | 0x40)) }
            return String(UnicodeScalar(key))
        }
    }

    /// Why the relay stopped.
    enum RelayEnd {
        /// The escape key, typed alone.
        case detached
        /// Without a terminal: stdin ended and the console went quiet.
        case inputEnded
        /// Another session took the console over (`--force`).
        case takenOver
        /// SIGTERM or SIGHUP, or the terminal went away.
        case stopped
        /// The console's host end closed (it may come back on a new pty).
        case hungUp
    }

    /// Where a console's host end is, found without following a path the guest wrote.
    public struct Endpoint: Sendable {
        public var devid: Int
        /// "console 0", "channel org.conch.agent".
        public var label: String
        /// The frontend's `tty` node for a pty; nil for a socket channel.
        public var ttyNode: String?
        public var socketPath: String?
    }

    /// Attaches this process's terminal (or stdin and stdout) to a console until
    /// the escape key, the console closing for good, another session taking it
    /// over, or — without a terminal — stdin ending and `linger` seconds of quiet.
    /// Throws, before touching the terminal, when another session holds the
    /// console and `force` is not set; throws, saying why, when the session ends
    /// other than by the operator (taken over, or the console gone).
    public static func attach(
        host: HostConnection,
        domain: DomainInfo,
        target: Target,
        options: Options = Options()
    ) async throws {
        let endpoint = try await locate(host: host, domain: domain, target: target)
        let session = try ConsoleSessionLock.acquire(
            path: ConsoleSessionLock.path(
                runDirectory: host.runDirectory,
                domid: domain.domid.rawValue,
                devid: endpoint.devid
            ),
            force: options.force,
            what: "\(endpoint.label) of \(domain.name)",
            takeOver: "`conch console --force \(domain.name)`"
        )
        defer { session.release() }
        var descriptor = try await open(endpoint, host: host, domain: domain)
        defer { close(descriptor) }
        let terminal = isatty(STDIN_FILENO) == 1
        if terminal, let escape = options.escape {
            let banner =
                "Connected to \(endpoint.label) of \(domain.name). Escape character is \(Options.describe(escape)).\n"
            _ = writeAll(STDERR_FILENO, Array(banner.utf8)[...])
        }
        let replaceEscape = options.replaceEscape
        let show: ([UInt8]) -> [UInt8] = { bytes in
            replaceEscape ? ConsoleLogFormatter.replacingEscapes(bytes) : bytes
        }
        if endpoint.devid == 0 {
            _ = writeAll(STDOUT_FILENO, show(history(runDirectory: host.runDirectory, domid: domain.domid))[...])
        }
        var saved = termios()
        if terminal {
            tcgetattr(STDIN_FILENO, &saved)
            var raw = saved
            cfmakeraw(&raw)
            tcsetattr(STDIN_FILENO, TCSANOW, &raw)
        }
        defer { if terminal { tcsetattr(STDIN_FILENO, TCSANOW, &saved) } }
        let stop = StopSignals()
        /// What to tell the operator when the session did not end by their hand.
        var failure: String?
        while true {
            let end = relay(
                descriptor,
                terminal: terminal,
                escape: options.escape,
                lingerMilliseconds: Int32(max(0, options.linger) * 1000),
                stop: stop.descriptor,
                session: session,
                show: show
            )
            if end == .takenOver { failure = ": taken over by another session" }
            if end == .stopped { failure = ": stopped by a signal" }
            guard end == .hungUp else { break }
            guard let ttyNode = endpoint.ttyNode else {
                failure = " closed: its socket closed (consoled stopped serving it, or the domain went away)"
                break
            }
            // The pty went away: consoled restarted (it publishes a new pty) or the
            // domain is going. Follow the tty node for a while, as xenconsole does.
            let frontend = ConsoleLayout.frontend(domain.domid, devid: endpoint.devid)
            let old = (try? await host.store.readString(ttyNode)) ?? ""
            guard
                let fresh = await followNewPty(
                    store: host.store,
                    frontend: frontend,
                    node: ttyNode,
                    old: old,
                    label: endpoint.label
                )
            else {
                let gone = (try? await host.store.directory(frontend)) == nil
                failure =
                    gone
                    ? " closed: \(domain.name) is gone"
                    : " closed: consoled stopped serving it (is it running? `conch up` restarts it)"
                break
            }
            close(descriptor)
            descriptor = fresh
        }
        if terminal { _ = writeAll(STDOUT_FILENO, Array("\r\n".utf8)[...]) }
        if let failure { throw ToolstackError("\(endpoint.label) of \(domain.name)\(failure)") }
    }

    /// Console 0's output from before the session, from consoled's history (the
    /// pty itself holds only what fitted in its buffer, and consoled discards that);
    /// empty when consoled has none or does not answer.
    public static func history(runDirectory: RunDirectory, domid: DomID) -> [UInt8] {
        let answer = try? UnixSocketPath.exchange(
            runDirectory.consoledControlSocket,
            request: Array("history \(domid.rawValue)\n".utf8)
        )
        guard let answer, !answer.starts(with: Array("error:".utf8)) else { return [] }
        return answer
    }

    /// Waits up to 10 s for the `tty` node to name a new pty, and opens it; nil at
    /// once when the console's frontend directory is gone (the domain went away).
    public static func followNewPty(
        store: XenstoreClient,
        frontend: String,
        node: String,
        old: String,
        label: String
    ) async -> Int32? {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard (try? await store.directory(frontend)) != nil else { return nil }
            if let tty = try? await store.readString(node), !tty.isEmpty, tty != old,
                let fd = try? openPty(tty, label: label)
            {
                return fd
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    /// The console's pty, opened, or its socket, connected.
    public static func open(_ endpoint: Endpoint, host: HostConnection, domain: DomainInfo) async throws -> Int32 {
        if let path = endpoint.socketPath { return try connectChannelSocket(path, label: endpoint.label) }
        guard let node = endpoint.ttyNode, let tty = try? await host.store.readString(node), !tty.isEmpty else {
            throw ToolstackError(
                "\(endpoint.label) of \(domain.name) has no pty yet: is consoled running (`conch up`)?"
            )
        }
        return try openPty(tty, label: endpoint.label)
    }

    /// Where the console's host end is.
    ///
    /// Every path comes from somewhere the guest cannot write (XSA-178): the
    /// frontend directory is derived from the domid and devid, a channel is found
    /// by name in the toolstack's `/libxl` copy, and its socket path is taken from
    /// there. The pty path is the one node read from the frontend directory (a
    /// node consoled wrote and the guest can only read), and it is opened only if
    /// it is a pty.
    public static func locate(host: HostConnection, domain: DomainInfo, target: Target) async throws -> Endpoint {
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
            guard let found = await host.channels(d.rawValue).last(where: { $0.name == name })?.devid else {
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
                return Endpoint(devid: devid, label: label, ttyNode: nil, socketPath: path)
            }
        }
        return Endpoint(devid: devid, label: label, ttyNode: frontend + "/tty", socketPath: nil)
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

    /// Moves bytes both ways until the escape key typed alone (terminal), the
    /// console closing (`.hungUp`), `stop` turning readable, another session asking
    /// for the console, or — without a terminal — stdin ending and the console going
    /// quiet. A paste that merely contains the escape byte goes to the guest.
    static func relay(
        _ console: Int32,
        terminal: Bool,
        escape: UInt8?,
        lingerMilliseconds: Int32,
        stop: Int32,
        session: ConsoleSessionLock,
        show: ([UInt8]) -> [UInt8]
    ) -> RelayEnd {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var inputOpen = true
        /// How often a takeover request is looked for: an `access(2)` four times a second.
        let takeoverCheck: Int32 = 250
        var quiet: Int32 = 0
        while true {
            var fds = [
                pollfd(fd: console, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inputOpen ? STDIN_FILENO : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: stop, events: Int16(POLLIN), revents: 0),
            ]
            let wait = inputOpen ? takeoverCheck : min(takeoverCheck, max(0, lingerMilliseconds - quiet))
            let ready = poll(&fds, 3, wait)
            if ready < 0 {
                if errno == EINTR { continue }
                return .hungUp
            }
            if session.takeoverRequested { return .takenOver }
            if ready == 0 {
                guard !inputOpen else { continue }
                quiet += wait
                if quiet >= lingerMilliseconds { return .inputEnded }  // quiet for the linger time after stdin ended
                continue
            }
            quiet = 0
            if fds[2].revents != 0 { return .stopped }
            if fds[0].revents != 0 {
                let got = read(console, &buffer, buffer.count)
                guard got > 0 else { return .hungUp }
                guard writeAll(STDOUT_FILENO, show(Array(buffer[..<got]))[...]) else { return .stopped }
            }
            if inputOpen, fds[1].revents != 0 {
                let got = read(STDIN_FILENO, &buffer, buffer.count)
                if got <= 0 {
                    inputOpen = false
                    continue
                }
                if terminal, let escape, got == 1, buffer[0] == escape { return .detached }
                guard writeAll(console, buffer[..<got]) else { return .hungUp }
            }
        }
    }
}
