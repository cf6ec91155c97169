//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// accept(2) for a hand-written poll loop, with the two things such loops forget:
/// every accepted descriptor is close-on-exec, and running out of descriptors
/// (EMFILE, ENFILE) pauses accepting for a while. Without the pause the listener
/// stays readable, poll returns at once, and the daemon spins at 100% CPU while
/// the connection waits in the backlog.
public struct Acceptor {
    public let listener: Int32
    private var resumeAt: ContinuousClock.Instant?
    private var pause: Duration = .milliseconds(50)

    public init(listener: Int32) { self.listener = listener }

    /// Whether the loop should poll the listener now.
    public mutating func isAccepting(now: ContinuousClock.Instant = .now) -> Bool {
        guard let resumeAt else { return true }
        if now < resumeAt { return false }
        self.resumeAt = nil
        return true
    }

    /// Milliseconds until accepting resumes (a poll timeout), or `otherwise`.
    public func pollTimeout(otherwise: Int32) -> Int32 {
        guard let resumeAt else { return otherwise }
        let left = ContinuousClock.now.duration(to: resumeAt)
        let milliseconds = max(
            1,
            Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
        )
        return otherwise < 0 ? milliseconds : min(otherwise, milliseconds)
    }

    /// The next connection, or nil (none waiting, or out of descriptors: then
    /// accepting pauses, 50 ms at first and up to 1 s while it keeps failing).
    public mutating func accept(nonBlocking: Bool = false) -> Int32? {
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else {
            if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM {
                resumeAt = .now + pause
                pause = min(pause * 2, .seconds(1))
            }
            return nil
        }
        pause = .milliseconds(50)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        if nonBlocking { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        return fd
    }
}

/// The same pause for a NIO server channel. NIO's `AcceptBackoffHandler` does not
/// help when accept fails at the start of a read cycle (the channel keeps a read
/// pending and stays registered, so the event loop spins); turning `autoRead` off
/// unregisters the listener until the pause ends.
public final class AcceptPauseHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = any Channel
    private var pause: TimeAmount = .milliseconds(50)

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pause = .milliseconds(50)
        context.fireChannelRead(data)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        let channel = context.channel
        channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        channel.eventLoop.scheduleTask(in: pause) {
            channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        }
        pause = min(pause * 2, .seconds(1))
    }
}
