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
    }

    public let runDirectory: RunDirectory
    public private(set) var daemons: [Daemon] = []
    private let executable = ChildProcess.currentExecutable()

    public init(runDirectory: RunDirectory, consoledArguments: [String] = [], logLevel: String = "info") {
        self.runDirectory = runDirectory
        let common = ["--run-dir", runDirectory.path, "--log-level", logLevel]
        daemons = [
            Daemon(
                name: "hypervisor",
                arguments: ["hypervisor"] + common,
                readyPath: runDirectory.hypervisorSocket,
                pidFile: runDirectory.hypervisorPidFile
            ),
            Daemon(
                name: "xenstored",
                arguments: ["xenstored"] + common,
                readyPath: runDirectory.xenstoredSocket,
                pidFile: runDirectory.xenstoredPidFile
            ),
            Daemon(
                name: "consoled",
                arguments: ["consoled"] + common + consoledArguments,
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
        try FileManager.default.createDirectory(atPath: runDirectory.logDirectory, withIntermediateDirectories: true)
        for name in names {
            guard let index = daemons.firstIndex(where: { $0.name == name }) else { continue }
            if let pid = PidFile(path: daemons[index].pidFile).read(), kill(pid, 0) == 0 {
                throw SupervisorError(
                    "a \(name) is already running in \(runDirectory) (pid \(pid)): run `conch down` first, "
                        + "or choose another --run-dir"
                )
            }
            try launch(index)
        }
    }

    public var isRunning: [String] { daemons.filter { $0.process != nil }.map(\.name) }

    private func launch(_ index: Int) throws {
        let daemon = daemons[index]
        unlink(daemon.readyPath)  // a stale socket would look ready
        let logPath = "\(runDirectory.logDirectory)/\(daemon.name).log"
        let process = try ChildProcess.logging(to: logPath, executable: executable, arguments: daemon.arguments)
        daemons[index].process = process
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

    /// Restarts any daemon that died; returns what it did, one line each.
    public func superviseOnce() -> [String] {
        var events: [String] = []
        for index in daemons.indices {
            guard let process = daemons[index].process, let ended = try? process.poll() else { continue }
            daemons[index].process = nil
            daemons[index].restarts += 1
            let name = daemons[index].name
            do {
                try launch(index)
                events.append("\(name) exited (\(ended)); restarted (restart \(daemons[index].restarts))")
            } catch {
                events.append("\(name) exited (\(ended)); restart failed: \(error)")
            }
        }
        return events
    }

    /// Stops one daemon: SIGTERM, then SIGKILL after `grace` seconds.
    public func stop(_ name: String, grace: Double = 5) {
        guard let index = daemons.firstIndex(where: { $0.name == name }), let process = daemons[index].process else {
            return
        }
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
