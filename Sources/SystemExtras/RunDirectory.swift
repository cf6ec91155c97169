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
    public var logDirectory: String { path + "/logs" }

    public var description: String { path }

    /// Creates the directory (mode 0700) if it does not exist.
    public func create() throws(Errno) {
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw Errno(rawValue: errno) }
    }
}

/// A pid file: written at start, removed at orderly stop.
public struct PidFile: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public func write(pid: Int32 = getpid()) throws(Errno) {
        let text = "\(pid)\n"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
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
}

/// Raises this process's soft limit on open descriptors to its hard limit: a
/// daemon serving a thousand consoles holds several descriptors for each.
/// Returns the new soft limit.
@discardableResult
public func raiseDescriptorLimit() -> UInt64 {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    return UInt64(limit.rlim_cur)
}

/// Up to `limit` bytes of a small file (a pid file, a `/proc` entry); nil if it
/// cannot be opened.
func readSmallFile(_ path: String, limit: Int) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
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
