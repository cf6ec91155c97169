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
    public let process: Process
    public let socketPath: String
    public let directory: ScratchDirectory
    private let stderrPipe = Pipe()

    /// Starts the daemon on `<scratch>/xs.sock` and waits until it accepts connections.
    public init(extraArguments: [String] = [], useRunDirectory: Bool = false) throws {
        directory = try ScratchDirectory()
        socketPath = useRunDirectory ? directory.path + "/xenstored.sock" : directory.path + "/xs.sock"
        process = Process()
        process.executableURL = URL(fileURLWithPath: try ConchExecutable.path())
        let location = useRunDirectory ? ["--run-dir", directory.path] : ["--socket", socketPath]
        process.arguments = ["xenstored"] + location + extraArguments
        process.standardError = stderrPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        try Self.waitForSocket(socketPath, process: process)
    }

    /// Polls until `path` accepts a connection (or the process dies).
    public static func waitForSocket(_ path: String, process: Process, attempts: Int = 1000) throws {
        for _ in 0..<attempts {
            if canConnect(path) { return }
            guard process.isRunning else {
                throw DaemonFailed(
                    description: "daemon exited with status \(process.terminationStatus) before listening"
                )
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

    /// Sends SIGTERM and waits; returns the exit status and what the daemon logged.
    @discardableResult
    public func stop() -> (status: Int32, log: String) {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        let log = String(decoding: stderrPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        directory.remove()
        return (process.terminationStatus, log)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        directory.remove()
    }
}

/// Runs any program and captures its output (with a stdin string).
public func runProgram(
    _ executable: String,
    _ arguments: [String],
    environment: [String: String]? = nil,
    input: String? = nil,
    currentDirectory: String? = nil
) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
    if let environment { process.environment = environment }
    let stdout = Pipe()
    let stderr = Pipe()
    let stdin = Pipe()
    process.standardOutput = stdout
    process.standardError = stderr
    process.standardInput = input == nil ? FileHandle.nullDevice : stdin
    try process.run()
    if let input {
        let writer = Thread {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
    }
    let errorData = Locked(Data())
    let drainer = Thread { errorData.value = stderr.fileHandleForReading.readDataToEndOfFile() }
    drainer.start()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while !drainer.isFinished { usleep(1000) }
    return (
        process.terminationStatus, String(decoding: out, as: UTF8.self),
        String(decoding: errorData.value, as: UTF8.self)
    )
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
