//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CConchShims
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs a closure when a process that is not our child exits.
///
/// A pidfd turns readable when its process exits. NIO cannot hold one (reading it
/// fails with EINVAL, which NIO treats as a bug), so a small thread of its own
/// waits on it.
public enum ProcessExitWatch {
    /// Starts a thread named `threadName` that calls `onExit` once `pid` has
    /// exited. Returns false, calling nothing, when the process cannot be watched
    /// (it has already gone, or the kernel predates pidfds).
    @discardableResult
    public static func start(pid: pid_t, threadName: String, onExit: @escaping @Sendable () -> Void) -> Bool {
        let pidfd = cconch_pidfd_open(pid)
        guard pidfd >= 0 else { return false }
        let thread = Thread {
            var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            while poll(&entry, 1, -1) < 0 && errno == EINTR {}
            close(pidfd)
            onExit()
        }
        thread.name = threadName
        thread.start()
        return true
    }
}
