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

/// Runs a syscall that returns -1 and sets errno on failure, retrying on EINTR.
///
/// Errno policy (as NIO's `System.swift`): EBADF and EFAULT mean Conch passed a
/// closed descriptor or a bad pointer — a bug, so they trap; every other errno
/// is an expected condition and is thrown as `Errno`.
@inlinable
func retryingSyscall<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno
        if code == EINTR { continue }
        precondition(code != EBADF && code != EFAULT, "syscall failed with \(Errno(rawValue: code)): a Conch bug")
        throw Errno(rawValue: code)
    }
}

extension FileDescriptor {
    /// Sets or clears `O_NONBLOCK`.
    public func setNonBlocking(_ enabled: Bool) throws(Errno) {
        let flags = try retryingSyscall { fcntl(rawValue, F_GETFL) }
        let updated = enabled ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        _ = try retryingSyscall { fcntl(rawValue, F_SETFL, updated) }
    }

    /// Clears `FD_CLOEXEC` so a spawned child inherits the descriptor.
    public func setInheritable(_ inheritable: Bool) throws(Errno) {
        let flags = try retryingSyscall { fcntl(rawValue, F_GETFD) }
        let updated = inheritable ? flags & ~FD_CLOEXEC : flags | FD_CLOEXEC
        _ = try retryingSyscall { fcntl(rawValue, F_SETFD, updated) }
    }
}

/// Writes every byte to `descriptor`, retrying on EINTR and waiting for a
/// non-blocking descriptor to take more; false if it fails otherwise (the
/// other end went away).
public func writeAll(_ descriptor: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
    var remaining = bytes
    while !remaining.isEmpty {
        // SAFETY: the pointer is used only within the closure, for `count` bytes of the slice.
        let written = remaining.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 {
            if errno == EINTR { continue }
            if errno == EAGAIN {
                var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                _ = poll(&entry, 1, -1)
                continue
            }
            return false
        }
        remaining = remaining.dropFirst(written)
    }
    return true
}
