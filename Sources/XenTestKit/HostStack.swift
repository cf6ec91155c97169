//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Hypervisors
import SystemExtras
import XenHypervisor
import XenSim

/// A Conch daemon (`conch hypervisor`, `conch xenstored`, …) running as a real
/// child process in a test's run directory.
public final class DaemonProcess: @unchecked Sendable {
    public let process: TestProcess
    public let name: String
    private let stderrFile: String

    /// Starts `conch <arguments>` and waits until the daemon accepts connections on
    /// `readyPath`.
    public init(_ arguments: [String], readyPath: String, logDirectory: String) throws {
        name = arguments.first ?? "daemon"
        stderrFile = "\(logDirectory)/\(name)-\(UUID().uuidString.prefix(8)).stderr"
        process = try TestProcess(try ConchExecutable.path(), arguments, error: .file(stderrFile))
        for _ in 0..<1000 {
            if UnixSocketPath.isListening(readyPath) { return }
            guard process.isRunning else {
                throw XenstoredProcess.DaemonFailed(description: "\(name) exited early: \(log)")
            }
            usleep(10_000)
        }
        throw XenstoredProcess.DaemonFailed(description: "\(name) never created \(readyPath)")
    }

    /// What the daemon wrote to stderr so far.
    public var log: String { (try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? "" }

    /// SIGTERM, then wait (SIGKILL after a grace period); returns the exit
    /// status, 128 + the signal for a daemon a signal ended.
    @discardableResult
    public func stop() -> Int32 {
        process.stop()
        return process.status
    }

    /// SIGKILL, then wait.
    public func kill() {
        process.signal(SIGKILL)
        process.wait(seconds: 30)
    }

    deinit {
        if process.isRunning { kill() }
    }
}

/// A scratch run directory with `conch hypervisor` (and optionally
/// `conch xenstored --run-dir`) running in it.
public final class HostStack: @unchecked Sendable {
    public let directory: ScratchDirectory
    /// Readable by guests (the run directory is not): trigger files and the like.
    public let shared: ScratchDirectory
    public private(set) var hypervisor: DaemonProcess
    private let hypervisorArguments: [String]
    public private(set) var xenstored: DaemonProcess?
    public private(set) var consoled: DaemonProcess?

    public var runDirectory: String { directory.path }
    public var hypervisorSocket: String { directory.path + "/hypervisor.sock" }
    public var xenstoredSocket: String { directory.path + "/xenstored.sock" }
    public var logDirectory: String { directory.path + "/logs" }

    /// - Parameter hypervisorArguments: extra options for `conch hypervisor`.
    public init(xenstored withXenstored: Bool = false, hypervisorArguments: [String] = []) throws {
        directory = try ScratchDirectory(prefix: "conch-host")
        shared = try ScratchDirectory.guestReadable()
        self.hypervisorArguments = hypervisorArguments
        try FileManager.default.createDirectory(atPath: directory.path + "/logs", withIntermediateDirectories: true)
        hypervisor = try DaemonProcess(
            ["hypervisor", "--run-dir", directory.path] + hypervisorArguments,
            readyPath: directory.path + "/hypervisor.sock",
            logDirectory: directory.path + "/logs"
        )
        if withXenstored { try startXenstored() }
    }

    /// Starts `conch hypervisor` again after it died (the old process is reaped).
    public func restartHypervisor() throws {
        hypervisor.kill()
        hypervisor = try DaemonProcess(
            ["hypervisor", "--run-dir", directory.path] + hypervisorArguments,
            readyPath: directory.path + "/hypervisor.sock",
            logDirectory: directory.path + "/logs"
        )
    }

    public func startXenstored() throws {
        xenstored = try DaemonProcess(
            ["xenstored", "--run-dir", directory.path],
            readyPath: xenstoredSocket,
            logDirectory: logDirectory
        )
    }

    /// Starts `conch consoled --run-dir` (waits for its statistics socket).
    public func startConsoled(_ extraArguments: [String] = []) throws {
        consoled = try DaemonProcess(
            ["consoled", "--run-dir", directory.path] + extraArguments,
            readyPath: directory.path + "/consoled.sock",
            logDirectory: logDirectory
        )
    }

    /// Stops consoled with SIGTERM (or SIGKILL when `kill`) and forgets it.
    public func stopConsoled(kill: Bool = false) {
        if kill { consoled?.kill() } else { consoled?.stop() }
        consoled = nil
        if kill { unlink(directory.path + "/consoled.sock") }
    }

    /// The guest's stdio log (`conch-test-guest` prints `key=value` lines there).
    public func guestOutput(_ name: String) -> String {
        (try? String(contentsOfFile: "\(logDirectory)/guest-\(name).stdio.log", encoding: .utf8)) ?? ""
    }

    /// Polls `condition` every 10 ms, up to `seconds`; a deadlock guard, not a timing assertion.
    public func eventually(seconds: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
        try XenTestKit.eventually(seconds: seconds, condition)
    }

    /// A privileged (dom0) connection to this stack's hypervisor.
    public func privilegedHypervisor() throws -> any PrivilegedHypervisor {
        try HypervisorFactory.privileged(.simulated(RunDirectory(path: runDirectory)))
    }

    /// `eventually` for async conditions.
    public func eventuallyAsync(seconds: Double = 30, _ condition: () async throws -> Bool) async rethrows -> Bool {
        try await XenTestKit.eventuallyAsync(seconds: seconds, condition)
    }

    public func stop() {
        consoled?.stop()
        xenstored?.stop()
        hypervisor.stop()
        directory.remove()
        shared.remove()
    }

    deinit {
        directory.remove()
        shared.remove()
    }
}
