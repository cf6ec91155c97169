//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras

#if canImport(Glibc)
import Glibc
#endif

/// One interactive session per console: an exclusive `flock` on a file in the run
/// directory, holding the session's pid. Two clients on one pty would each get
/// half of the output; the second is refused, or with `--force` the first is told
/// to stop (SIGTERM: it puts its terminal back and says it was taken over).
/// The kernel drops the lock when the holder dies, however it dies.
struct ConsoleSessionLock {
    private let descriptor: Int32

    /// - Parameters:
    ///   - what: the console, for messages ("console 0 of web").
    ///   - takeOver: the command that takes it over, for the refusal.
    static func acquire(path: String, force: Bool, what: String, takeOver: String) throws -> ConsoleSessionLock {
        // The run directory itself may not exist where only Xen's daemons run (a
        // dom0 whose consoled is xenconsoled): make it, private, as a stack would.
        let directory = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(
            atPath: directory,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw ToolstackError("cannot open \(path) to claim \(what): \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            // Never 0 or 1: kill(2) would reach a process group or init.
            let holder = PidFile(path: path).read().flatMap { $0 > 1 ? $0 : nil }
            guard force else {
                close(fd)
                let who = holder.map { " (pid \($0))" } ?? ""
                throw ToolstackError("\(what) is attached in another session\(who): detach it, or `\(takeOver)`")
            }
            if let holder { kill(holder, SIGTERM) }
            let deadline = ContinuousClock.now + .seconds(5)
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                guard ContinuousClock.now < deadline else {
                    close(fd)
                    throw ToolstackError("\(what): the other session did not let go within 5 s")
                }
                usleep(20_000)
            }
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        return ConsoleSessionLock(descriptor: fd)
    }

    func release() {
        _ = ftruncate(descriptor, 0)
        close(descriptor)
    }
}
