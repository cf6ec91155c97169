//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Foundation
import SystemExtras
import XenHypervisor

#if canImport(Glibc)
import Glibc
#endif

struct ConsoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Attach to a domain's console 0, console N or a channel (like xl console).",
        discussion: """
            On a terminal: raw mode, and Ctrl-] detaches. Without a terminal (a script): stdin \
            goes to the console and output comes out on stdout; after stdin ends, output is \
            relayed until the console has been quiet for --linger seconds. pty and socket \
            channels behave the same. Examples:

              conch console web-1
              conch console web-1 --channel org.conch.provision.0
              echo status | conch console web-1 -n 2
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    @Argument(help: "The domain: a name or a domid.")
    var domain: String

    @Option(name: .shortAndLong, help: "Console number (0: the primary console).")
    var number: Int?

    @Option(help: "A channel, by name.")
    var channel: String?

    @Option(help: "Without a terminal: seconds of quiet after stdin ends before exiting.")
    var linger: Double = 1

    func validate() throws {
        if number != nil, channel != nil { throw ValidationError("give -n or --channel, not both") }
        if let number, number < 0 { throw ValidationError("-n must be 0 or more") }
    }

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        let target = try host.domain(domain)
        let which: ConsoleAttachment.Target =
            if let channel { .channel(channel) } else if let number, number > 0 { .secondary(number) } else { .primary }
        try await ConsoleAttachment.attach(host: host, domain: target, target: which, linger: linger)
    }
}

/// Finds a console's host end in xenstore and relays a terminal (or stdin and
/// stdout) to it.
enum ConsoleAttachment {
    enum Target {
        case primary
        case secondary(Int)
        case channel(String)
    }

    /// The escape byte, Ctrl-] (as xl console and xenconsole use).
    static let escape: UInt8 = 0x1d

    static func attach(host: HostConnection, domain: DomainInfo, target: Target, linger: Double) async throws {
        // Console 0: what was written before we came, from consoled's history (the pty
        // itself holds only what fitted in its buffer, and consoled discards that).
        if case .primary = target {
            let history = try? readAll(
                fromSocket: host.runDirectory.consoledControlSocket,
                request: "history \(domain.domid.rawValue)\n"
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
    static func open(host: HostConnection, domain: DomainInfo, target: Target) async throws -> Int32 {
        let d = domain.domid.rawValue
        let frontend: String
        let label: String
        switch target {
        case .primary:
            frontend = "/local/domain/\(d)/console"
            label = "console 0"
        case .secondary(let devid):
            frontend = "/local/domain/\(d)/device/console/\(devid)"
            label = "console \(devid)"
        case .channel(let name):
            let base = "/local/domain/\(d)/device/console"
            var found: String?
            for devid in (try? await host.store.directory(base)) ?? [] {
                guard let backend = try? await host.store.readString("\(base)/\(devid)/backend") else { continue }
                if (try? await host.store.readString(backend + "/name")) == name { found = "\(base)/\(devid)" }
            }
            guard let found else {
                throw CLIError("domain \(domain.name) has no channel named '\(name)': see `conch channel-list \(d)`")
            }
            frontend = found
            label = "channel \(name)"
        }
        guard (try? await host.store.directory(frontend)) != nil else {
            throw CLIError("domain \(domain.name) has no \(label)")
        }
        let backend = try? await host.store.readString(frontend + "/backend")
        let connection = try? await backend.asyncMap { try await host.store.readString($0 + "/connection") }
        if connection == "socket" {
            let path = (try? await backend.asyncMap { try await host.store.readString($0 + "/path") }) ?? ""
            do {
                return try UnixSocketPath.connect(path)
            } catch {
                throw CLIError("cannot connect to \(label)'s socket \(path) (\(error)): is consoled running?")
            }
        }
        guard let tty = try? await host.store.readString(frontend + "/tty"), !tty.isEmpty else {
            throw CLIError("\(label) of \(domain.name) has no pty yet: is consoled running (`conch up`)?")
        }
        let fd = Glibc.open(tty, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { throw CLIError("cannot open \(tty): \(String(cString: strerror(errno)))") }
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

    static func writeAll(_ descriptor: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var remaining = bytes
        while !remaining.isEmpty {
            // SAFETY: the pointer is used only within the closure, for `count` bytes of the slice.
            let written = remaining.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&entry, 1, -1)
                    continue
                }
                return false
            }
            remaining = remaining.dropFirst(written)
        }
        return true
    }
}

extension Optional {
    fileprivate func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
