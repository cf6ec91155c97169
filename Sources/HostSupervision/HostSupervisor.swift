//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Starts the host stack's daemons — hypervisor, xenstored, consoled — in one run
/// directory, restarts any that dies, and stops them in order. `conch up`,
/// `conch demo` and `conch bench create` use it.
///
/// Not thread-safe: one task uses it at a time (`conch up` hands it from its
/// watchdog task back to the main task only after the watchdog ended).
public final class HostSupervisor: @unchecked Sendable {
    public struct Daemon {
        public let name: String
        let arguments: [String]
        /// Accepts connections once the daemon serves (its socket).
        let readyPath: String
        let pidFile: String
        var process: ChildProcess?
        var restarts = 0
        /// Started, and not stopped since: the supervisor keeps it running.
        var wanted = false
        var startedAt = ContinuousClock.now
        var backoff = RestartBackoff()
        /// When to try again, while it is down.
        var nextAttempt: ContinuousClock.Instant?
    }

    public let runDirectory: RunDirectory
    public private(set) var daemons: [Daemon] = []
    private let executable = ChildProcess.currentExecutable()

    /// The daemons' options (log level and format, consoled's logs and limits,
    /// xenstored's quotas) and where their own logs go.
    public let configuration: StackConfiguration
    /// Where the daemons' own logs go (``StackConfiguration/logDirectory(for:)``).
    public let logDirectory: String

    public init(
        runDirectory: RunDirectory,
        configuration: StackConfiguration = StackConfiguration(),
        consoledArguments: [String] = []
    ) {
        self.runDirectory = runDirectory
        self.configuration = configuration
        logDirectory = configuration.logDirectory(for: runDirectory)
        let common = ["--run-dir", runDirectory.path]
        // A system stack's console logs go where its daemon logs go, unless told.
        let consoleLogs =
            configuration[.logDirectory] == nil && logDirectory != runDirectory.logDirectory
            ? ["--log-dir", logDirectory] : []
        daemons = [
            Daemon(
                name: "hypervisor",
                arguments: ["hypervisor"] + common + configuration.arguments(for: "hypervisor"),
                readyPath: runDirectory.hypervisorSocket,
                pidFile: runDirectory.hypervisorPidFile
            ),
            Daemon(
                name: "xenstored",
                arguments: ["xenstored"] + common + configuration.arguments(for: "xenstored"),
                readyPath: runDirectory.xenstoredSocket,
                pidFile: runDirectory.xenstoredPidFile
            ),
            Daemon(
                name: "consoled",
                arguments: ["consoled"] + common + configuration.arguments(for: "consoled") + consoleLogs
                    + consoledArguments,
                readyPath: runDirectory.consoledSocket,
                pidFile: runDirectory.consoledPidFile
            ),
        ]
    }

    /// The supervisor's own pid file (what `conch down` signals).
    public static func pidFile(_ runDirectory: RunDirectory) -> String { runDirectory.path + "/up.pid" }

    /// Starts the named daemons in order, each ready before the next. A fresh stack
    /// starts with a fresh store: a journal left by an earlier stack (its domains
    /// died with its hypervisor) is removed; restarts within this stack keep it.
    public func start(_ names: [String]) throws {
        try runDirectory.create()
        if names.contains("xenstored") { unlink(runDirectory.xenstoredJournal) }
        try FileManager.default.createDirectory(
            atPath: logDirectory,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        for name in names {
            guard let index = daemons.firstIndex(where: { $0.name == name }) else { continue }
            if let pid = PidFile(path: daemons[index].pidFile).read(), kill(pid, 0) == 0 {
                throw SupervisorError(
                    "a \(name) is already running in \(runDirectory) (pid \(pid)): run `conch down` first, "
                        + "or choose another --run-dir"
                )
            }
            try launch(index)
            daemons[index].wanted = true
        }
    }

    public var isRunning: [String] { daemons.filter { $0.process != nil }.map(\.name) }

    private func launch(_ index: Int) throws {
        let daemon = daemons[index]
        unlink(daemon.readyPath)  // a stale socket would look ready
        let logPath = "\(logDirectory)/\(daemon.name).log"
        let process = try ChildProcess.logging(to: logPath, executable: executable, arguments: daemon.arguments)
        daemons[index].process = process
        daemons[index].startedAt = .now
        for _ in 0..<1500 {
            if UnixSocketPath.isListening(daemon.readyPath) { return }
            if let ended = try? process.poll() {
                daemons[index].process = nil
                let tail = (try? String(contentsOfFile: logPath, encoding: .utf8))?.split(separator: "\n").suffix(5)
                throw SupervisorError(
                    "\(daemon.name) exited (\(ended)) while starting; its log \(logPath) ends:\n"
                        + (tail?.joined(separator: "\n") ?? "")
                )
            }
            usleep(10_000)
        }
        throw SupervisorError("\(daemon.name) did not become ready within 15 s; see \(logPath)")
    }

    /// Restarts any daemon that died, after the wait its ``RestartBackoff`` calls
    /// for; a restart that fails is tried again later, never given up. Returns
    /// what it did, one line each.
    public func superviseOnce() -> [String] {
        rotateDaemonLogs()
        var events: [String] = []
        let now = ContinuousClock.now
        for index in daemons.indices {
            let name = daemons[index].name
            if let process = daemons[index].process, let ended = try? process.poll() {
                daemons[index].process = nil
                let wait = daemons[index].backoff.died(after: daemons[index].startedAt.duration(to: now))
                daemons[index].nextAttempt = now + wait
                if wait > .zero {
                    events.append("\(name) exited (\(ended)); restarting in \(Self.describe(wait))")
                } else {
                    events.append("\(name) exited (\(ended))")
                }
            }
            guard daemons[index].process == nil, daemons[index].wanted, let next = daemons[index].nextAttempt,
                ContinuousClock.now >= next
            else { continue }
            daemons[index].restarts += 1
            do {
                try launch(index)
                daemons[index].nextAttempt = nil
                events.append("\(name) restarted (restart \(daemons[index].restarts))")
            } catch {
                let wait = daemons[index].backoff.restartFailed()
                daemons[index].nextAttempt = ContinuousClock.now + wait
                events.append("\(name): restart failed: \(error); trying again in \(Self.describe(wait))")
            }
        }
        return events
    }

    static func describe(_ wait: Duration) -> String {
        let milliseconds = wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000
        return milliseconds < 1000 ? "\(milliseconds) ms" : "\(milliseconds / 1000) s"
    }

    /// Stops one daemon: SIGTERM, then SIGKILL after `grace` seconds.
    public func stop(_ name: String, grace: Double = 5) {
        guard let index = daemons.firstIndex(where: { $0.name == name }) else { return }
        daemons[index].wanted = false
        daemons[index].nextAttempt = nil
        guard let process = daemons[index].process else { return }
        daemons[index].process = nil
        process.kill(SIGTERM)
        let deadline = ContinuousClock.now + .seconds(grace)
        while ContinuousClock.now < deadline {
            if (try? process.poll()) != nil { return }
            usleep(5_000)
        }
        process.kill(SIGKILL)
        _ = try? process.wait()
    }

    /// consoled first (it marks every ring DISCONNECTED), then the hypervisor
    /// (which destroys every domain), then xenstored.
    public func stopAll() {
        for name in ["consoled", "hypervisor", "xenstored"] { stop(name) }
        unlink(runDirectory.xenstoredJournal)
    }
}

/// A daemon of the host stack that would not start: which, and where its log is.
public struct SupervisorError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension HostSupervisor {
    /// Rotates each daemon's log that grew past `log.max_bytes` (0 or unset: never),
    /// keeping `log.backups` old ones (`.1` newest). The daemon keeps writing to the
    /// same file (it has it open, appending), so the log is copied aside and then
    /// truncated, as logrotate's copytruncate does; a line written between the two
    /// can be lost, never reordered.
    func rotateDaemonLogs() {
        guard let limit = configuration[.logMaxBytes].flatMap({ UInt64($0) }), limit > 0 else { return }
        let backups = configuration[.logBackups].flatMap { Int($0) } ?? 5
        for daemon in daemons {
            let path = "\(logDirectory)/\(daemon.name).log"
            var info = stat()
            guard stat(path, &info) == 0, UInt64(info.st_size) > limit else { continue }
            Self.rotate(path, backups: backups)
        }
    }

    /// Shifts `path.1`… up by one (dropping the oldest), copies `path` to `path.1`
    /// and truncates `path`.
    static func rotate(_ path: String, backups: Int) {
        guard backups > 0 else {
            truncate(path, 0)
            return
        }
        unlink("\(path).\(backups)")
        for index in stride(from: backups - 1, through: 1, by: -1) {
            rename("\(path).\(index)", "\(path).\(index + 1)")
        }
        let source = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard source >= 0 else { return }
        defer { close(source) }
        let copy = open("\(path).1", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard copy >= 0 else { return }
        defer { close(copy) }
        // In pieces: a log may be as large as log.max_bytes allows.
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = read(source, &buffer, buffer.count)
            guard got > 0, writeAll(copy, buffer[..<got]) else { break }
        }
        truncate(path, 0)
    }
}
