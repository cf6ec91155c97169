//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras

/// A scratch directory under /tmp with a short path (Unix socket paths are
/// limited to 107 bytes), removed by ``remove()``.
public struct ScratchDirectory: Sendable {
    public let path: String

    public init(prefix: String = "conch-test") throws {
        path = try RunDirectory.makeTemporary(prefix: prefix).path
    }

    /// A scratch directory guests can read (mode 0755): how a test hands a
    /// sandboxed guest a file, since the run directory is out of its reach.
    public static func guestReadable(prefix: String = "conch-shared") throws -> ScratchDirectory {
        let directory = try ScratchDirectory(prefix: prefix)
        chmod(directory.path, 0o755)
        return directory
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// `conch xenstored` running as a real child process for a test.
public final class XenstoredProcess: @unchecked Sendable {
    public let process: TestProcess
    public let socketPath: String
    public let directory: ScratchDirectory
    private let stderrFile: String

    /// Starts the daemon on `<scratch>/xs.sock` and waits until it accepts connections.
    public init(extraArguments: [String] = [], useRunDirectory: Bool = false) throws {
        directory = try ScratchDirectory()
        socketPath = useRunDirectory ? directory.path + "/xenstored.sock" : directory.path + "/xs.sock"
        stderrFile = directory.path + "/xenstored.stderr"
        let location = useRunDirectory ? ["--run-dir", directory.path] : ["--socket", socketPath]
        process = try TestProcess(
            try ConchExecutable.path(),
            ["xenstored"] + location + extraArguments,
            error: .file(stderrFile)
        )
        try Self.waitForSocket(socketPath, process: process)
    }

    /// Polls until `path` accepts a connection (or the process dies).
    public static func waitForSocket(_ path: String, process: TestProcess, attempts: Int = 1000) throws {
        for _ in 0..<attempts {
            if canConnect(path) { return }
            guard process.isRunning else {
                throw DaemonFailed(description: "daemon exited with status \(process.status) before listening")
            }
            usleep(10_000)
        }
        throw DaemonFailed(description: "daemon did not listen on \(path)")
    }

    public static func canConnect(_ path: String) -> Bool {
        guard let fd = try? UnixSocketPath.connect(path) else { return false }
        close(fd)
        return true
    }

    public struct DaemonFailed: Error, CustomStringConvertible {
        public let description: String
    }

    /// Environment for Xen's own clients: `XENSTORED_PATH` pointing at this daemon.
    public var clientEnvironment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["XENSTORED_PATH"] = socketPath
        return environment
    }

    /// What the daemon logged so far.
    public var log: String { (try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? "" }

    /// Sends SIGTERM and waits; returns the exit status and what the daemon logged.
    @discardableResult
    public func stop() -> (status: Int32, log: String) {
        process.stop()
        let log = (try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? ""
        directory.remove()
        return (process.status, log)
    }

    deinit {
        if process.isRunning { process.signal(SIGKILL) }
        process.wait(seconds: 10)
        directory.remove()
    }
}

/// Runs any program and captures its output (with a stdin string). A program
/// still running after `timeout` seconds is killed, and its status reads 137.
public func runProgram(
    _ executable: String,
    _ arguments: [String],
    environment: [String: String]? = nil,
    input: String? = nil,
    currentDirectory: String? = nil,
    timeout: Double = 300
) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = try TestProcess(
        executable,
        arguments,
        environment: environment,
        currentDirectory: currentDirectory,
        input: input == nil ? .null : .pipe,
        output: .pipe,
        error: .pipe
    )
    let stdout = PipeDrain(process.standardOutput!)
    let stderr = PipeDrain(process.standardError!)
    if let input, let writer = process.standardInput {
        // A thread of its own: the child may not read all of it before it ends.
        Thread {
            try? writer.write(contentsOf: Data(input.utf8))
            try? writer.close()
        }.start()
    }
    process.wait(seconds: timeout)
    let out = stdout.collect()
    let err = stderr.collect()
    return (process.status, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
}

/// Finds a program on PATH (or an absolute path); nil if it is not installed.
public func which(_ program: String) -> String? {
    if program.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") {
        let candidate = "\(directory)/\(program)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// True in CI (`CI` set), where a missing optional tool is a failure, not a skip.
public var runningInCI: Bool { ProcessInfo.processInfo.environment["CI"] != nil }
