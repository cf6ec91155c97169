//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenstoreCore

#if canImport(Glibc)
import Glibc
#endif

/// xenstored's journal on disk: ``JournalEntry`` records appended as they happen,
/// replaced by a snapshot when it grows. It protects against the daemon's death
/// (`kill -9`, a crash), not the machine's: records are written, not synced, and
/// the page cache outlives the process.
public final class JournalFile {
    public let path: String
    private var fd: Int32
    /// Bytes in the file now, and right after the last snapshot.
    private(set) var size = 0
    private var snapshotSize = 0
    /// The file is rewritten as a snapshot once it is this large and twice the last snapshot.
    let compactionThreshold: Int
    /// A write failed (a full disk, say): recording stops and the daemon says so
    /// once; it keeps serving from memory.
    private(set) var failed: String?

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private init(path: String, fd: Int32, size: Int, compactionThreshold: Int) {
        self.path = path
        self.fd = fd
        self.size = size
        self.snapshotSize = size
        self.compactionThreshold = compactionThreshold
    }

    deinit { close(fd) }

    /// Opens (creating, 0600, never through a symbolic link) the journal at `path`
    /// and returns it with what it holds; a torn last record is cut off.
    public static func open(path: String, compactionThreshold: Int = 8 << 20) throws -> (JournalFile, [JournalEntry]) {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw Failure(description: "cannot open the journal \(path): \(String(cString: strerror(errno)))")
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let got = read(fd, &buffer, buffer.count)
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { break }
            bytes += buffer.prefix(got)
        }
        let (entries, valid) = JournalEntry.decode(bytes)
        if valid < bytes.count { _ = ftruncate(fd, off_t(valid)) }
        return (JournalFile(path: path, fd: fd, size: valid, compactionThreshold: compactionThreshold), entries)
    }

    /// Appends one entry (before the daemon acts on it).
    func append(_ entry: JournalEntry) {
        guard failed == nil else { return }
        write(entry.encoded())
    }

    /// Whether the journal has grown enough to be replaced by a snapshot.
    var wantsCompaction: Bool {
        failed == nil && size >= compactionThreshold && size >= 2 * snapshotSize
    }

    /// Replaces the journal by `snapshot`, atomically: written beside it, then renamed.
    func replace(with snapshot: [JournalEntry]) throws {
        let temporary = path + ".new"
        unlink(temporary)
        let next = Glibc.open(temporary, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard next >= 0 else {
            throw Failure(description: "cannot write \(temporary): \(String(cString: strerror(errno)))")
        }
        let previous = fd
        fd = next
        size = 0
        failed = nil
        write(snapshot.flatMap { $0.encoded() })
        if let failed {
            close(next)
            fd = previous
            unlink(temporary)
            throw Failure(description: failed)
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            close(next)
            fd = previous
            unlink(temporary)
            throw Failure(description: "cannot replace \(path): \(reason)")
        }
        close(previous)
        snapshotSize = size
    }

    private func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            // SAFETY: the pointer is used only during the call, within the array's bounds.
            let wrote = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if wrote < 0 && errno == EINTR { continue }
            guard wrote > 0 else {
                failed = "writing the journal \(path) failed: \(String(cString: strerror(errno)))"
                return
            }
            offset += wrote
        }
        size += bytes.count
    }
}
