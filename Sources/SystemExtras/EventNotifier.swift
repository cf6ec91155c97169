//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CConchShims
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An `eventfd(2)` counter: the notification half of a simulated event channel.
///
/// Signals coalesce — several `signal()`s before one `wait()` wake it once — so a
/// reader must re-check its ring after every wake-up. No wake-up is ever lost.
/// Each reader should own its descriptor's open file description: `O_NONBLOCK`
/// is shared through `dup` and SCM_RIGHTS.
public final class EventNotifier: Sendable {
    public let fileDescriptor: FileDescriptor

    /// Creates a new eventfd with a zero counter.
    public init(nonBlocking: Bool = false) throws(Errno) {
        let flags = Int32(EFD_CLOEXEC) | (nonBlocking ? Int32(EFD_NONBLOCK) : 0)
        let fd = try retryingSyscall { eventfd(0, flags) }
        fileDescriptor = FileDescriptor(rawValue: fd)
    }

    /// Adopts an eventfd received from elsewhere.
    public init(adopting descriptor: FileDescriptor) {
        fileDescriptor = descriptor
    }

    deinit { try? fileDescriptor.close() }

    /// Adds one to the counter, waking a waiter.
    public func signal() throws(Errno) {
        var one: UInt64 = 1
        // SAFETY: writes exactly the 8 bytes of `one`, as eventfd requires.
        _ = try retryingSyscall { withUnsafeBytes(of: &one) { write(fileDescriptor.rawValue, $0.baseAddress, 8) } }
    }

    /// Blocks until the counter is non-zero, then returns and resets it.
    @discardableResult
    public func wait() throws(Errno) -> UInt64 {
        var value: UInt64 = 0
        // SAFETY: reads exactly the 8 bytes of `value`.
        _ = try retryingSyscall {
            withUnsafeMutableBytes(of: &value) { read(fileDescriptor.rawValue, $0.baseAddress, 8) }
        }
        return value
    }

    /// Waits at most `timeoutMilliseconds` (-1: forever) for a signal. Returns the
    /// counter, or nil on time-out. Works whether or not the fd is non-blocking.
    public func wait(timeoutMilliseconds: Int32) throws(Errno) -> UInt64? {
        var entry = pollfd(fd: fileDescriptor.rawValue, events: Int16(POLLIN), revents: 0)
        let ready = try retryingSyscall { poll(&entry, 1, timeoutMilliseconds) }
        guard ready > 0 else { return nil }
        return try tryConsume()
    }

    /// Returns and resets the counter if it is non-zero, without blocking.
    public func tryConsume() throws(Errno) -> UInt64? {
        var entry = pollfd(fd: fileDescriptor.rawValue, events: Int16(POLLIN), revents: 0)
        guard try retryingSyscall({ poll(&entry, 1, 0) }) > 0 else { return nil }
        var value: UInt64 = 0
        // SAFETY: reads exactly the 8 bytes of `value`.
        let got = withUnsafeMutableBytes(of: &value) { read(fileDescriptor.rawValue, $0.baseAddress, 8) }
        if got == -1 {
            if errno == EAGAIN { return nil }  // another reader of the same counter took it
            throw Errno(rawValue: errno)
        }
        return value
    }
}
