//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Synchronization
import XenstoreCore

#if canImport(Glibc)
import Glibc
#endif

/// xenstored's journal on disk: ``JournalEntry`` records appended as they happen,
/// replaced by a snapshot when it grows. It protects against the daemon's death
/// (`kill -9`, a crash), not the machine's: records are not synced, and the page
/// cache outlives the process.
///
/// The file is mapped shared and records are copied into the mapping: an append
/// is a copy, not a system call per request (most requests change the store, so
/// this is on the hot path). Space is reserved (`fallocate`) before the mapping
/// grows over it, so a full disk is a failed reservation, never a SIGBUS. A record's
/// length is stored last, after its body: a daemon killed mid-append leaves a zero
/// length where the record would start, which ends the journal on the next open.
public final class JournalFile {
    public let path: String
    private var fd: Int32
    /// Bytes of records in the file now, and right after the last snapshot. The
    /// file is longer: the reserved space after the records is zero.
    private(set) var size = 0
    private var snapshotSize = 0
    /// The shared mapping of the whole file (`capacity` bytes), nil once recording failed.
    // SAFETY: valid from `reserve`'s mmap to `unmap`; written only by `write`, within
    // `capacity`, on the one thread that owns this journal.
    private var mapping: UnsafeMutableRawPointer?
    private var capacity = 0
    /// The file is rewritten as a snapshot once it is this large and twice the last snapshot.
    let compactionThreshold: Int
    /// A write failed (a full disk, say): recording stops and the daemon says so
    /// once; it keeps serving from memory.
    private(set) var failed: String?

    /// Space is reserved and mapped in steps of this many bytes.
    static let reservationStep = 1 << 20

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

    deinit {
        unmap()
        close(fd)
    }

    /// Opens (creating, 0600, never through a symbolic link) the journal at `path`
    /// and returns it with what it holds; a torn last record and the reserved zeros
    /// after the records are cut off.
    public static func open(path: String, compactionThreshold: Int = 8 << 20) throws -> (JournalFile, [JournalEntry]) {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
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
        let journal = JournalFile(path: path, fd: fd, size: valid, compactionThreshold: compactionThreshold)
        journal.reserve(valid)
        return (journal, entries)
    }

    /// Appends one entry (before the daemon acts on it).
    func append(_ entry: JournalEntry) {
        guard failed == nil else { return }
        entry.encode(into: &scratch)
        write(scratch)
    }

    /// Where each record is encoded before it is copied in, kept between appends.
    private var scratch: [UInt8] = []

    /// Whether the journal has grown enough to be replaced by a snapshot.
    var wantsCompaction: Bool {
        failed == nil && size >= compactionThreshold && size >= 2 * snapshotSize
    }

    /// Replaces the journal by `snapshot`, atomically: written beside it, then renamed.
    func replace(with snapshot: [JournalEntry]) throws {
        let temporary = path + ".new"
        unlink(temporary)
        let next = Glibc.open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard next >= 0 else {
            throw Failure(description: "cannot write \(temporary): \(String(cString: strerror(errno)))")
        }
        let bytes = snapshot.flatMap { $0.encoded() }
        var offset = 0
        while offset < bytes.count {
            // SAFETY: the pointer is used only during the call, within the array's bounds.
            let wrote = bytes.withUnsafeBytes { Glibc.write(next, $0.baseAddress! + offset, $0.count - offset) }
            if wrote < 0 && errno == EINTR { continue }
            guard wrote > 0 else {
                let reason = "writing \(temporary) failed: \(String(cString: strerror(errno)))"
                close(next)
                unlink(temporary)
                throw Failure(description: reason)
            }
            offset += wrote
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            close(next)
            unlink(temporary)
            throw Failure(description: "cannot replace \(path): \(reason)")
        }
        unmap()
        close(fd)
        fd = next
        size = bytes.count
        snapshotSize = size
        failed = nil
        reserve(size)
    }

    /// Copies one record into the mapping, its length last (see the type's comment).
    private func write(_ record: [UInt8]) {
        if size + record.count > capacity { reserve(size + record.count) }
        guard let mapping, failed == nil else { return }
        let lengthSize = MemoryLayout<UInt32>.size
        // SAFETY: `reserve` mapped `capacity` bytes and `size + record.count <= capacity`;
        // the source pointers are used only within the calls, within the array's bounds.
        record.withUnsafeBytes { source in
            (mapping + size + lengthSize).copyMemory(
                from: source.baseAddress! + lengthSize,
                byteCount: record.count - lengthSize
            )
            // The body must be in the mapping before the length that makes it a record.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            (mapping + size).copyMemory(from: source.baseAddress!, byteCount: lengthSize)
        }
        size += record.count
    }

    /// Makes the file at least `needed` bytes long, reserved on disk, and maps it
    /// all; on failure stops recording.
    private func reserve(_ needed: Int) {
        let step = Self.reservationStep
        let wanted = (needed / step + 1) * step
        unmap()
        let reserved = posix_fallocate(fd, 0, off_t(wanted))
        guard reserved == 0 else {
            failed = "reserving \(wanted) bytes for the journal \(path) failed: \(String(cString: strerror(reserved)))"
            return
        }
        // SAFETY: the file is `wanted` bytes long and reserved on disk, so every page of
        // the mapping is backed (no SIGBUS); the old mapping was unmapped above.
        guard let address = mmap(nil, wanted, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0),
            address != MAP_FAILED
        else {
            failed = "mapping the journal \(path) failed: \(String(cString: strerror(errno)))"
            return
        }
        mapping = address
        capacity = wanted
    }

    private func unmap() {
        // SAFETY: unmaps exactly what `reserve` mapped; `mapping` is cleared with it.
        if let mapping { munmap(mapping, capacity) }
        mapping = nil
        capacity = 0
    }
}
