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

/// A program a test runs, on `posix_spawn` and `waitpid` (``ChildProcess``), with
/// a deadline on every wait.
///
/// Not Foundation's `Process`: on Linux its `waitUntilExit` spins a run loop until
/// a SIGCHLD handler on another thread marks the process ended, and under the
/// load of a parallel test run it has been seen to park a thread for good — with
/// two cores, two such threads froze a whole CI run. Here a wait is `waitpid` on
/// the one pid, and one that outlasts its deadline kills the child and says so.
public final class TestProcess: @unchecked Sendable {
    /// Where the child's standard input comes from.
    public enum Input: Sendable {
        case null
        /// A pipe; write to ``standardInput``.
        case pipe
    }

    /// Where one of the child's output streams goes.
    public enum Output: Sendable {
        case discard
        /// A pipe; read ``standardOutput`` / ``standardError``.
        case pipe
        /// Appended to a file (created if missing).
        case file(String)
        /// For stderr: wherever stdout goes.
        case standardOutput
        /// This process's own stream of the same number.
        case inherit
    }

    public struct Failed: Error, CustomStringConvertible {
        public let description: String
    }

    public let pid: pid_t
    /// The write end of the child's stdin, for ``Input/pipe``.
    public let standardInput: FileHandle?
    /// The read ends of the child's stdout and stderr, for ``Output/pipe``.
    public let standardOutput: FileHandle?
    public let standardError: FileHandle?
    private let child: ChildProcess
    private let lock = NSLock()
    private var ended: ChildProcess.Termination?

    public init(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        currentDirectory: String? = nil,
        input: Input = .null,
        output: Output = .discard,
        error: Output = .discard
    ) throws {
        Self.ignoreBrokenPipes
        var descriptors: [Int32: FileDescriptor] = [:]
        var opened: [Int32] = []  // ours to close once the child has its copies
        defer { for fd in opened { close(fd) } }
        func open(_ path: String, _ flags: Int32) throws -> Int32 {
            let fd = Foundation.open(path, flags | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw Failed(description: "open \(path): \(String(cString: strerror(errno)))") }
            opened.append(fd)
            return fd
        }
        func pipeEnds() throws -> (read: Int32, write: Int32) {
            var ends: [Int32] = [-1, -1]
            guard pipe(&ends) == 0 else { throw Failed(description: "pipe: \(String(cString: strerror(errno)))") }
            // Close-on-exec: no other child may hold a pipe end and keep it from ending.
            for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            return (ends[0], ends[1])
        }
        switch input {
        case .null:
            descriptors[0] = FileDescriptor(rawValue: try open("/dev/null", O_RDONLY))
            standardInput = nil
        case .pipe:
            let ends = try pipeEnds()
            opened.append(ends.read)
            descriptors[0] = FileDescriptor(rawValue: ends.read)
            standardInput = FileHandle(fileDescriptor: ends.write, closeOnDealloc: true)
        }
        func place(_ output: Output, at target: Int32) throws -> FileHandle? {
            switch output {
            case .discard:
                descriptors[target] = FileDescriptor(rawValue: try open("/dev/null", O_WRONLY))
                return nil
            case .file(let path):
                descriptors[target] = FileDescriptor(rawValue: try open(path, O_WRONLY | O_CREAT | O_APPEND))
                return nil
            case .standardOutput:
                descriptors[target] = descriptors[1]
                return nil
            case .inherit:
                descriptors[target] = FileDescriptor(rawValue: target)
                return nil
            case .pipe:
                let ends = try pipeEnds()
                opened.append(ends.write)
                descriptors[target] = FileDescriptor(rawValue: ends.write)
                return FileHandle(fileDescriptor: ends.read, closeOnDealloc: true)
            }
        }
        standardOutput = try place(output, at: 1)
        standardError = try place(error, at: 2)
        child = try ChildProcess(
            executable: executable,
            arguments: arguments,
            descriptors: descriptors,
            environment: environment,
            currentDirectory: currentDirectory
        )
        pid = child.pid
    }

    /// A child that exits before reading all its input must not take the test
    /// process with it: writes to its pipe fail with EPIPE instead.
    private static let ignoreBrokenPipes: Void = { _ = Glibc.signal(SIGPIPE, SIG_IGN) }()

    deinit {
        if termination == nil {
            signal(SIGKILL)
            wait(seconds: 10)
        }
    }

    /// How the child ended; nil while it runs.
    public var termination: ChildProcess.Termination? {
        lock.withLock {
            if ended == nil, let reaped = try? child.poll() { ended = reaped }
            return ended
        }
    }

    public var isRunning: Bool { termination == nil }

    /// The exit code, or 128 + the signal that ended it (as a shell reports it);
    /// -1 while it runs.
    public var status: Int32 {
        switch termination {
        case .exited(let code): code
        case .signalled(let signal): 128 + signal
        case nil: -1
        }
    }

    /// Sends `signal` unless the child has been reaped (its pid may be reused).
    public func signal(_ signal: Int32 = SIGTERM) {
        lock.withLock {
            if ended == nil { _ = Foundation.kill(pid, signal) }
        }
    }

    /// Waits up to `seconds` for the child to end; past that, kills it with
    /// SIGKILL (and reaps it), so a test that hangs a child still ends.
    @discardableResult
    public func wait(seconds: Double = 300) -> ChildProcess.Termination {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var pause: useconds_t = 200
        while ContinuousClock.now < deadline {
            if let termination { return termination }
            usleep(pause)
            pause = min(pause * 2, 20_000)
        }
        FileHandle.standardError.write(Data("TestProcess: pid \(pid) still ran after \(seconds) s; killing it\n".utf8))
        signal(SIGKILL)
        while true {
            if let termination { return termination }
            usleep(1000)
        }
    }

    /// SIGTERM, then `grace` seconds before SIGKILL.
    @discardableResult
    public func stop(grace: Double = 15) -> ChildProcess.Termination {
        signal(SIGTERM)
        return wait(seconds: grace)
    }
}

/// Reads a pipe to its end on a thread of its own, so a child never blocks on a
/// full pipe. ``collect(grace:)`` stops waiting for the end `grace` seconds after
/// it is called: a grandchild that inherited the pipe can hold it open for ever.
public final class PipeDrain: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    private var giveUpAt: ContinuousClock.Instant?
    private var finished = false

    public init(_ handle: FileHandle) {
        let fd = handle.fileDescriptor
        Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, 100)
                if ready > 0 {
                    let got = read(fd, &buffer, buffer.count)
                    if got > 0 {
                        lock.withLock { bytes += buffer[..<got] }
                        continue
                    }
                    if got < 0 && errno == EINTR { continue }
                    break  // end of file, or an error
                }
                let late = lock.withLock { giveUpAt.map { ContinuousClock.now >= $0 } ?? false }
                if late { break }
            }
            _ = handle  // the descriptor stays open until the thread is done with it
            lock.withLock { finished = true }
        }.start()
    }

    /// Everything read, once the pipe ended or `grace` seconds passed.
    public func collect(grace: Double = 2) -> [UInt8] {
        lock.withLock { giveUpAt = ContinuousClock.now + .seconds(grace) }
        while !lock.withLock({ finished }) { usleep(1000) }
        return lock.withLock { bytes }
    }
}
