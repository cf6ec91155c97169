//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// The write end of the self-pipe; written only by the signal handler.
nonisolated(unsafe) private var stopPipeWriteEnd: Int32 = -1

private let writeStopByte: @convention(c) (Int32) -> Void = { _ in
    var byte: UInt8 = 1
    // Async-signal-safe: one write(2) to a non-blocking pipe.
    _ = write(stopPipeWriteEnd, &byte, 1)
}

/// SIGTERM and SIGHUP as a descriptor that turns readable (a self-pipe), for a
/// poll loop that must put the terminal back before it exits. One per process:
/// creating it installs the handlers.
public final class StopSignals: Sendable {
    /// Readable once a stop signal arrived.
    public let descriptor: Int32

    public init() {
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) == 0 {
            for end in ends {
                _ = fcntl(end, F_SETFD, FD_CLOEXEC)
                _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            }
            stopPipeWriteEnd = ends[1]
            signal(SIGTERM, writeStopByte)
            signal(SIGHUP, writeStopByte)
        }
        descriptor = ends[0]
    }
}
