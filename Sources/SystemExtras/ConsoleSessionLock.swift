//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One interactive session per console, whoever holds it: `conch console` or a
/// browser tab of `conch web`. Two clients on one pty would each get half of the
/// output; the second is refused, or with `--force` the first is asked to stop.
///
/// The session is an exclusive `flock` on `<run-dir>/consoles/d<domid>-<devid>.lock`,
/// which holds the holder's pid while it is held. The kernel drops the lock when
/// the holder dies, however it dies. A takeover creates `<lock>.takeover` (holding
/// the taker's pid) and waits for the lock; every holder looks for that file
/// (``takeoverRequested``) and lets go, and a session starting meanwhile finds the
/// lock free but the live taker's request, and is refused as if the taker held it.
/// A file rather than a signal, because one `conch web` process holds many
/// sessions and only the one asked for may end.
public final class ConsoleSessionLock: Sendable {
    public let path: String
    private let descriptor: Int32

    /// How long a takeover waits for the holder to let go.
    static let takeoverTimeout: Duration = .seconds(5)

    /// Why a session could not be had, for the person who asked.
    public struct Refused: Error, CustomStringConvertible, Sendable {
        public let description: String
        /// Another session holds the console (as opposed to a failure to claim it).
        public let busy: Bool
    }

    /// The lock of console `devid` of `domid` in `runDirectory`.
    public static func path(runDirectory: RunDirectory, domid: UInt16, devid: Int) -> String {
        path(directory: runDirectory.sessionLockDirectory, domid: domid, devid: devid)
    }

    /// The lock of console `devid` of `domid` in the lock directory `directory`.
    public static func path(directory: String, domid: UInt16, devid: Int) -> String {
        "\(directory)/d\(domid)-\(devid).lock"
    }

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    /// Takes the session, or throws a message naming who holds it and how to take it
    /// over. With `force`, asks the holder to let go and waits up to 5 s for it.
    ///
    /// - Parameters:
    ///   - what: the console, for messages ("console 0 of web").
    ///   - takeOver: how to take it over, for the refusal ("`conch console --force web`").
    public static func acquire(path: String, force: Bool, what: String, takeOver: String) throws -> ConsoleSessionLock {
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
            throw Refused(
                description: "cannot open \(path) to claim \(what): \(String(cString: strerror(errno)))",
                busy: false
            )
        }
        let request = path + ".takeover"
        func refuse(_ who: Int32?) -> Refused {
            Refused(
                description: "\(what) is attached in another session\(who.map { " (pid \($0))" } ?? ""): "
                    + "detach it, or \(takeOver)",
                busy: true
            )
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard force else {
                close(fd)
                throw refuse(holder(path: path))
            }
            // The request names its taker, so that a session starting while the
            // holder lets go can tell a taker still waiting from one that died.
            try? PidFile(path: request).write()
            defer { unlink(request) }
            let deadline = ContinuousClock.now + takeoverTimeout
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                guard ContinuousClock.now < deadline else {
                    close(fd)
                    throw Refused(description: "\(what): the other session did not let go within 5 s", busy: true)
                }
                usleep(20_000)
            }
        } else {
            // Free, but maybe only because its holder just let go to a taker that is
            // still waiting for it: that one gets it, not whoever comes by.
            if !force, let taker = PidFile(path: request).livePid() {
                close(fd)
                throw refuse(taker)
            }
            // A request left by a taker that died must not end this new session.
            unlink(request)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        return ConsoleSessionLock(path: path, descriptor: fd)
    }

    /// Whether another session asked to take this console over: the holder should
    /// end its session, saying so, and ``release()``.
    public var takeoverRequested: Bool { access(path + ".takeover", F_OK) == 0 }

    public func release() {
        _ = ftruncate(descriptor, 0)
        close(descriptor)
    }

    /// The pid of the live session holding the console at `path`, if any. Read
    /// without taking the lock (that could refuse a session starting meanwhile):
    /// a holder empties the file when it lets go; one that died leaves its pid,
    /// which names no live process.
    public static func holder(path: String) -> pid_t? {
        PidFile(path: path).livePid()
    }
}
