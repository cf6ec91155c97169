//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where a Conch host stack keeps its sockets, pid files and logs.
///
/// Resolution order: an explicit `--run-dir`, else `$CONCH_RUN_DIR`, else
/// `$XDG_RUNTIME_DIR/conch`, else `/tmp/conch-$UID`.
public struct RunDirectory: Hashable, Sendable, CustomStringConvertible {
    public let path: String

    public init(path: String) { self.path = path }

    public static func resolve(explicit: String?, environment: [String: String]) -> RunDirectory {
        if let explicit, !explicit.isEmpty { return RunDirectory(path: explicit) }
        if let dir = environment["CONCH_RUN_DIR"], !dir.isEmpty { return RunDirectory(path: dir) }
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return RunDirectory(path: runtime + "/conch")
        }
        return RunDirectory(path: "/tmp/conch-\(getuid())")
    }

    /// A new, empty directory `/tmp/<prefix>-XXXXXX` (mkdtemp: 0700, a name
    /// nobody else has), for a demo, a benchmark or a test.
    public static func makeTemporary(prefix: String) throws(Errno) -> RunDirectory {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw Errno(rawValue: errno) }
        return RunDirectory(
            path: String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        )
    }

    public var xenstoredSocket: String { path + "/xenstored.sock" }
    public var xenstoredPidFile: String { path + "/xenstored.pid" }
    /// xenstored's journal: what a restarted xenstored resumes from.
    public var xenstoredJournal: String { path + "/xenstored.journal" }
    public var hypervisorSocket: String { path + "/hypervisor.sock" }
    public var hypervisorPidFile: String { path + "/hypervisor.pid" }
    public var consoledPidFile: String { path + "/consoled.pid" }
    /// consoled's statistics socket (`conch stats`).
    public var consoledSocket: String { path + "/consoled.sock" }
    /// consoled's control socket (console 0's history for a client about to attach).
    public var consoledControlSocket: String { path + "/consoled-control.sock" }
    /// consoled's sink keeper (socket channels' listeners and clients, across restarts).
    public var keeperSocket: String { path + "/consoled-keeper.sock" }
    public var keeperPidFile: String { path + "/consoled-keeper.pid" }
    /// The sockets the keeper created (the only files it will ever unlink).
    public var keeperLedger: String { path + "/consoled-keeper.sockets" }
    public var logDirectory: String { path + "/logs" }
    /// One lock per console with a session attached (``ConsoleSessionLock``).
    public var sessionLockDirectory: String { path + "/consoles" }

    public var description: String { path }

    /// Creates the directory (mode 0700) if it does not exist, then ``verify()``s it.
    public func create() throws(RunDirectoryError) {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw RunDirectoryError(description: "cannot create the run directory \(path): \(Errno(rawValue: errno))")
        }
        try verify()
    }

    /// Refuses a run directory someone else could have prepared: it must be a real
    /// directory (not a symbolic link) owned by this user, writable by nobody else,
    /// in a parent that others cannot write to (or that is sticky, as /tmp is).
    /// Otherwise another local user could plant sockets or pid files in it, or
    /// swap it for their own. A directory that does not exist yet passes.
    public func verify() throws(RunDirectoryError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw RunDirectoryError(description: "cannot inspect the run directory \(path): \(Errno(rawValue: errno))")
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFDIR else {
            let what = kind == S_IFLNK ? "a symbolic link" : "not a directory"
            throw RunDirectoryError(description: "the run directory \(path) is \(what): use a directory of your own")
        }
        guard info.st_uid == geteuid() else {
            throw RunDirectoryError(
                description: "the run directory \(path) belongs to uid \(info.st_uid), not to you (uid \(geteuid())): "
                    + "someone else may have created it; remove it or choose another --run-dir"
            )
        }
        guard info.st_mode & 0o022 == 0 else {
            throw RunDirectoryError(
                description: "the run directory \(path) is writable by others (mode "
                    + "\(String(info.st_mode & 0o7777, radix: 8))): chmod 700 it or choose another --run-dir"
            )
        }
        let parent = path.hasPrefix("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) : "."
        var parentInfo = stat()
        if stat(parent.isEmpty ? "/" : parent, &parentInfo) == 0, parentInfo.st_mode & 0o022 != 0,
            parentInfo.st_mode & S_ISVTX == 0, parentInfo.st_uid != geteuid()
        {
            throw RunDirectoryError(
                description: "the run directory's parent \(parent) is writable by others and not sticky: "
                    + "anyone could replace \(path); choose another --run-dir"
            )
        }
    }
}

/// Why a run directory cannot be used.
public struct RunDirectoryError: Error, CustomStringConvertible {
    public let description: String
}

/// A pid file: written at start, removed at orderly stop.
public struct PidFile: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// Writes the file anew: an old one (a stale pid) is removed first and the new
    /// one created exclusively, never through a symbolic link.
    public func write(pid: Int32 = getpid()) throws(Errno) {
        let text = "\(pid)\n"
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        defer { close(fd) }
        let written = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        guard written == text.utf8.count else { throw Errno(rawValue: errno) }
    }

    public func remove() { unlink(path) }

    /// The pid recorded in the file, if any.
    public func read() -> Int32? {
        guard let bytes = readSmallFile(path, limit: 32), !bytes.isEmpty else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        return Int32(text.split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? "")
    }

    /// The pid recorded, if it names a live process (one of another user's counts);
    /// never 0 or 1, which would name a process group or init.
    public func livePid() -> Int32? {
        guard let pid = read(), pid > 1, kill(pid, 0) == 0 || errno == EPERM else { return nil }
        return pid
    }
}

/// Raises this process's limit on open descriptors: a daemon serving ten
/// thousand consoles holds several descriptors for each. A privileged process
/// (CAP_SYS_RESOURCE) raises its hard limit too, up to the kernel's `nr_open`,
/// as xenconsoled does; any other raises its soft limit to its hard one.
/// Returns the new soft limit.
@discardableResult
public func raiseDescriptorLimit() -> UInt64 {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
    let kernelCeiling = readSmallFile("/proc/sys/fs/nr_open", limit: 32)
        .flatMap { String(decoding: $0, as: UTF8.self).split(whereSeparator: \.isWhitespace).first }
        .flatMap { rlim_t($0) }
    if let kernelCeiling, kernelCeiling > limit.rlim_max {
        var raised = rlimit(rlim_cur: kernelCeiling, rlim_max: kernelCeiling)
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return UInt64(kernelCeiling) }
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    return UInt64(limit.rlim_cur)
}

/// Up to `limit` bytes of a small file (a pid file, a `/proc` entry); nil if it
/// cannot be opened.
func readSmallFile(_ path: String, limit: Int) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
        let count = Glibc.read(fd, &buffer, min(buffer.count, limit - bytes.count))
        if count < 0, errno == EINTR { continue }
        guard count > 0 else { break }
        bytes += buffer.prefix(count)
    }
    return bytes
}
