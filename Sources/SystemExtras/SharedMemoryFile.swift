//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CConchShims
import SystemPackage
import XenMemory

#if canImport(Glibc)
import Glibc
#endif

/// A file of whole 4 KiB pages backed by `memfd_create`: the memory of a
/// simulated domain, or a single shared page. Its descriptor can be sent to
/// another process (``UnixSocket/send(_:descriptors:)``), which maps it with
/// ``map(fileDescriptor:pageOffset:pageCount:writable:)`` and sees the same bytes.
public final class SharedMemoryFile: Sendable {
    public static let pageSize = 4096

    public let fileDescriptor: FileDescriptor
    public let pageCount: Int

    /// Creates a zero-filled memfd of `pageCount` pages, sealed against resizing
    /// so that no holder can shrink it under another's mapping (SIGBUS).
    public init(pageCount: Int, name: String = "conch") throws(Errno) {
        precondition(pageCount > 0)
        let fd = try retryingSyscall { name.withCString { cconch_memfd_create($0) } }
        let descriptor = FileDescriptor(rawValue: fd)
        do {
            _ = try retryingSyscall { ftruncate(fd, off_t(pageCount * SharedMemoryFile.pageSize)) }
            _ = try retryingSyscall { cconch_memfd_seal_size(fd) }
        } catch {
            try? descriptor.close()
            throw error
        }
        self.fileDescriptor = descriptor
        self.pageCount = pageCount
    }

    /// Adopts a received memfd descriptor (for example from SCM_RIGHTS); its size
    /// is read from the file.
    public init(adopting descriptor: FileDescriptor) throws(Errno) {
        var info = stat()
        _ = try retryingSyscall { fstat(descriptor.rawValue, &info) }
        guard info.st_size > 0, Int(info.st_size) % SharedMemoryFile.pageSize == 0 else { throw Errno.invalidArgument }
        self.fileDescriptor = descriptor
        self.pageCount = Int(info.st_size) / SharedMemoryFile.pageSize
    }

    deinit { try? fileDescriptor.close() }

    /// Maps `pageCount` pages starting at `pageOffset` with `MAP_SHARED`.
    public func map(pageOffset: Int = 0, pageCount: Int = 1, writable: Bool = true) throws(Errno) -> MappedMemory {
        guard pageOffset >= 0, pageCount > 0, pageOffset + pageCount <= self.pageCount else {
            throw Errno.invalidArgument
        }
        return try MappedMemory(
            fileDescriptor: fileDescriptor,
            pageOffset: pageOffset,
            pageCount: pageCount,
            writable: writable
        )
    }
}

/// A `MAP_SHARED` mapping of pages of a file; unmapped when released.
public final class MappedMemory: RegionBackedMemory {
    public let region: RawMemoryRegion
    public let isWritable: Bool

    /// Maps pages of any page-backed descriptor (a memfd held by someone else).
    public init(fileDescriptor: FileDescriptor, pageOffset: Int, pageCount: Int, writable: Bool) throws(Errno) {
        let length = pageCount * SharedMemoryFile.pageSize
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        let address = mmap(
            nil,
            length,
            protection,
            MAP_SHARED,
            fileDescriptor.rawValue,
            off_t(pageOffset * SharedMemoryFile.pageSize)
        )
        guard let address, address != MAP_FAILED else { throw Errno(rawValue: errno) }
        // SAFETY: mmap returned `length` bytes that stay mapped until deinit.
        self.region = RawMemoryRegion(base: address, byteCount: length)
        self.isWritable = writable
    }

    deinit {
        // SAFETY: unmaps exactly what init mapped; nothing can use it after deinit.
        munmap(region.base, region.byteCount)
    }
}
