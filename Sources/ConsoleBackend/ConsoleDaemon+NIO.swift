//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import SystemExtras
import XenABI
import XenHypervisor
import XenRing
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

extension ConsoleDaemon {
    // MARK: - NIO plumbing

    func watchEvents(_ descriptor: Int32, key: ConsoleKey) async throws -> any Channel {
        try await watchEvents(
            descriptor,
            ownership: .duplicated,
            onReadable: { [self] in
                self.assumeIsolated { $0.guestNotified(key) }
            }
        )
    }

    enum DescriptorOwnership {
        /// The channel owns a duplicate; the caller keeps its descriptor.
        case duplicated
        /// The channel takes the descriptor itself.
        case taken
    }

    /// A channel on the loop that calls `onReadable` whenever `descriptor` (an
    /// eventfd, a pidfd) becomes readable and `onClose` when it ends (a socket).
    func watchEvents(
        _ descriptor: Int32,
        ownership: DescriptorOwnership,
        onReadable: @escaping @Sendable () -> Void = {},
        onClose: @escaping @Sendable () -> Void = {}
    ) async throws -> any Channel {
        try await NIOPipeBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        DescriptorHandler(onReadable: onReadable, onClose: onClose)
                    )
                }
            }
            .takingOwnershipOfDescriptor(input: ownership == .duplicated ? dup(descriptor) : descriptor)
            .get()
    }

    /// A pty master (`isPty`) or the keeper's data stream, on the loop.
    func attachStream(descriptor: Int32, key: ConsoleKey, isPty: Bool = true) async throws -> any Channel {
        let daemon = self
        return try await NIOPipeBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ClientHandler(daemon: daemon, key: key, isPty: isPty)
                    )
                }
            }
            .takingOwnershipOfDescriptor(inputOutput: dup(descriptor))
            .get()
    }

    func startServer(
        _ path: String,
        handler: @escaping @Sendable (ConsoleDaemon) -> any ChannelHandler
    ) async throws -> any Channel {
        let daemon = self
        let logger = self.logger
        return try await ServerBootstrap(group: eventLoop)
            // Out of descriptors, stop accepting for a while instead of spinning.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler())
                }
            }
            .childChannelInitializer { channel in
                channel.checkHostToolstackPeer().flatMapThrowing { refusal in
                    if let refusal {
                        logger.warning("refused a connection to \(path): \(refusal)")
                        throw refusal
                    }
                    try channel.pipeline.syncOperations.addHandler(handler(daemon))
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
            .get()
    }
}

/// A descriptor became readable (a guest notified, a process exited) or ended.
final class DescriptorHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let onReadable: @Sendable () -> Void
    let onClose: @Sendable () -> Void
    init(onReadable: @escaping @Sendable () -> Void, onClose: @escaping @Sendable () -> Void) {
        self.onReadable = onReadable
        self.onClose = onClose
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { onReadable() }
    func channelInactive(context: ChannelHandlerContext) { onClose() }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {}
}

/// A pty master or a socket client: its bytes go to the guest, its writability
/// drives output.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let daemon: ConsoleDaemon
    let key: ConsoleKey
    let isPty: Bool
    init(daemon: ConsoleDaemon, key: ConsoleKey, isPty: Bool) {
        self.daemon = daemon
        self.key = key
        self.isPty = isPty
    }
    func channelActive(context: ChannelHandlerContext) {
        let key = self.key
        let channel = context.channel
        if !isPty { daemon.assumeIsolated { $0.clientAttached(key, channel) } }
        context.fireChannelActive()
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        let key = self.key
        let channel = context.channel
        daemon.assumeIsolated { $0.clientInput(key, bytes, from: channel) }
    }
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let key = self.key
        daemon.assumeIsolated { $0.service(key) }
        context.fireChannelWritabilityChanged()
    }
    func channelInactive(context: ChannelHandlerContext) {
        let key = self.key
        let channel = context.channel
        if !isPty { daemon.assumeIsolated { $0.clientDetached(key, channel) } }
        context.fireChannelInactive()
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {}
}
