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
