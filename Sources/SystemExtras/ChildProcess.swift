//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CConchShims
import Foundation
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, with chosen descriptors placed at
/// chosen numbers in the child (for example a control socket at fd 3).
public final class ChildProcess: Sendable {
    public let pid: pid_t
    /// Whether the child leads its own process group (signals reach the group).
    public let isGroupLeader: Bool
    /// A sandboxed guest's init reports the program's wait status here (see
    /// ``sandboxed(_:guestIndex:executable:arguments:environment:descriptors:hostname:)``).
    private let statusDescriptor: Int32?

    init(pid: pid_t, isGroupLeader: Bool, statusDescriptor: Int32?) {
        self.pid = pid
        self.isGroupLeader = isGroupLeader
        self.statusDescriptor = statusDescriptor
    }

    deinit {
        if let statusDescriptor { close(statusDescriptor) }
    }

    /// How a child ended.
    public enum Termination: Hashable, Sendable {
        case exited(Int32)
        case signalled(Int32)
    }

    /// Spawns `executable` with `arguments` (not including argv[0]).
    ///
    /// - Parameters:
    ///   - argument0: argv[0] when it is not `executable` (a program run through `/proc/self/fd/N`).
    ///   - descriptors: child fd number → descriptor in this process; each is
    ///     `dup2`'d into place in the child (and so is inherited even if it is
    ///     close-on-exec here). Standard streams are inherited unless remapped.
    ///   - environment: the child's environment; nil inherits this process's.
    ///   - newProcessGroup: start the child as the leader of its own process group,
    ///     so that ``kill(_:)`` reaches everything it starts too.
    ///   - currentDirectory: the child's working directory; nil keeps this process's.
    public init(
        executable: String,
        argument0: String? = nil,
        arguments: [String],
        descriptors: [Int32: FileDescriptor] = [:],
        environment: [String: String]? = nil,
        newProcessGroup: Bool = false,
        currentDirectory: String? = nil
    ) throws(Errno) {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        if newProcessGroup { posix_spawnattr_setpgroup(&attributes, 0) }
        isGroupLeader = newProcessGroup
        // A daemon that blocks or ignores signals (to read them from a descriptor)
        // must not pass that on: the child starts with no signal blocked and the
        // default action for every catchable signal.
        var flags = Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newProcessGroup { flags |= Int16(POSIX_SPAWN_SETPGROUP) }
        posix_spawnattr_setflags(&attributes, flags)
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        sigfillset(&signals)
        sigdelset(&signals, SIGKILL)
        sigdelset(&signals, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &signals)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, source) in descriptors.sorted(by: { $0.key < $1.key }) {
            if source.rawValue == target {
                // dup2 onto itself keeps FD_CLOEXEC; go through a spare number instead.
                let spare = try retryingSyscall { fcntl(source.rawValue, F_DUPFD_CLOEXEC, 100) }
                posix_spawn_file_actions_adddup2(&actions, spare, target)
                posix_spawn_file_actions_addclose(&actions, spare)
            } else {
                posix_spawn_file_actions_adddup2(&actions, source.rawValue, target)
            }
        }
        // Nothing else crosses over: a descriptor this process holds without
        // close-on-exec (one inherited from our own parent, say) would otherwise
        // live on in every daemon and guest — a leak, and a parent that waits for
        // EOF on it (Foundation's Process does) would wait forever.
        let firstUnmapped = max(3, (descriptors.keys.max() ?? 0) + 1)
        // SAFETY: `actions` is initialised above and outlives the call.
        let added = withUnsafeMutablePointer(to: &actions) { cconch_spawn_add_closefrom($0, firstUnmapped) }
        guard added == 0 else { throw Errno(rawValue: added) }
        if let currentDirectory {
            // SAFETY: as above; the path string is copied into the actions.
            let changed = withUnsafeMutablePointer(to: &actions) { cconch_spawn_add_chdir($0, currentDirectory) }
            guard changed == 0 else { throw Errno(rawValue: changed) }
        }

        let argv = [argument0 ?? executable] + arguments
        let env = environment.map { $0.map { "\($0.key)=\($0.value)" } }
        var child: pid_t = 0
        let status = withCStringArray(argv) { cArgv in
            if let env {
                return withCStringArray(env) { cEnv in
                    posix_spawn(&child, executable, &actions, &attributes, cArgv, cEnv)
                }
            }
            return posix_spawn(&child, executable, &actions, &attributes, cArgv, environ)
        }
        guard status == 0 else { throw Errno(rawValue: status) }
        pid = child
        statusDescriptor = nil
    }

    /// Starts a background program: stdin from /dev/null, stdout and stderr
    /// appended to `logPath` (created 0600, its directory too).
    public static func logging(
        to logPath: String,
        executable: String,
        arguments: [String],
        newProcessGroup: Bool = false
    ) throws -> ChildProcess {
        let directory = String(logPath[..<(logPath.lastIndex(of: "/") ?? logPath.startIndex)])
        if !directory.isEmpty { mkdir(directory, 0o700) }
        let log = try retryingSyscall { open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600) }
        defer { close(log) }
        let null = try retryingSyscall { open("/dev/null", O_RDWR | O_CLOEXEC) }
        defer { close(null) }
        return try ChildProcess(
            executable: executable,
            arguments: arguments,
            descriptors: [
                0: FileDescriptor(rawValue: null), 1: FileDescriptor(rawValue: log), 2: FileDescriptor(rawValue: log),
            ],
            newProcessGroup: newProcessGroup
        )
    }

    /// Waits for the child to end and reaps it.
    public func wait() throws(Errno) -> Termination {
        var status: Int32 = 0
        _ = try retryingSyscall { waitpid(pid, &status, 0) }
        return reported(Self.decode(status))
    }

    /// Reaps the child if it has ended; nil while it runs.
    public func poll() throws(Errno) -> Termination? {
        var status: Int32 = 0
        let result = try retryingSyscall { waitpid(pid, &status, WNOHANG) }
        return result == 0 ? nil : reported(Self.decode(status))
    }

    /// For a sandboxed guest, how its program ended (its init exits with a code
    /// standing for it); otherwise, or if the init was killed first, `own`.
    private func reported(_ own: Termination) -> Termination {
        guard let statusDescriptor else { return own }
        var status: Int32 = 0
        let got = read(statusDescriptor, &status, MemoryLayout<Int32>.size)
        return got == MemoryLayout<Int32>.size ? Self.decode(status) : own
    }

    /// Sends `signal` to the child — to its whole process group if it leads one.
    public func kill(_ signal: Int32 = SIGTERM) {
        _ = Glibc.kill(isGroupLeader ? -pid : pid, signal)
    }

    static func decode(_ status: Int32) -> Termination {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot import.
        let signal = status & 0x7f
        return signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
    }

    /// Runs `executable` to its end and returns how it ended with everything it
    /// wrote to standard output (standard error stays ours).
    public static func output(
        of executable: String,
        arguments: [String]
    ) throws(Errno) -> (termination: Termination, output: [UInt8]) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw Errno(rawValue: errno) }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let process: ChildProcess
        do {
            process = try ChildProcess(
                executable: executable,
                arguments: arguments,
                descriptors: [1: FileDescriptor(rawValue: ends[1])]
            )
        } catch {
            close(ends[0])
            close(ends[1])
            throw error
        }
        close(ends[1])
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = read(ends[0], &buffer, buffer.count)
            if got < 0, errno == EINTR { continue }
            if got <= 0 { break }
            output += buffer.prefix(got)
        }
        close(ends[0])
        return (try process.wait(), output)
    }

    /// Starts a server that announces itself with its first line of standard output
    /// (`conch web` prints its URL), and returns it with that line; standard error
    /// goes to `logPath`. Throws, with the log's text, if no line comes within
    /// `timeout` (the server is killed then).
    public static func announcing(
        executable: String,
        arguments: [String],
        logPath: String,
        timeout: Duration = .seconds(20)
    ) throws -> (process: ChildProcess, line: String) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw Errno(rawValue: errno) }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        defer { close(ends[0]) }
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        defer { if log >= 0 { close(log) } }
        var descriptors: [Int32: FileDescriptor] = [1: FileDescriptor(rawValue: ends[1])]
        if log >= 0 { descriptors[2] = FileDescriptor(rawValue: log) }
        let process: ChildProcess
        do {
            process = try ChildProcess(executable: executable, arguments: arguments, descriptors: descriptors)
        } catch {
            close(ends[1])
            throw error
        }
        close(ends[1])
        var line: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while line.last != UInt8(ascii: "\n"), ContinuousClock.now < deadline {
            var entry = pollfd(fd: ends[0], events: Int16(POLLIN), revents: 0)
            guard Glibc.poll(&entry, 1, 100) > 0 else { continue }
            var byte: UInt8 = 0
            guard read(ends[0], &byte, 1) == 1 else { break }
            line.append(byte)
        }
        guard line.last == UInt8(ascii: "\n") else {
            process.kill(SIGKILL)
            _ = try? process.wait()
            let errors = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw Announcement(description: "\(executable) \(arguments.joined(separator: " ")) said nothing: \(errors)")
        }
        return (process, String(decoding: line.dropLast(), as: UTF8.self))
    }

    public struct Announcement: Error, CustomStringConvertible {
        public let description: String
    }

    /// The path of the running executable (`/proc/self/exe`), so a process can
    /// start another copy of itself as a peer.
    public static func currentExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Calls `body` with a NULL-terminated array of C strings that lives for the call.
func withCStringArray<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    // SAFETY: strdup'd copies outlive `body` and are freed right after it.
    var pointers = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return body(pointers)
}
