//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import NIOCore
import XenstoreCore

/// The Unix-socket transport: one NIO child channel per dom0 client.
final class XenstoreSocketHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let hub: XenstoreHub
    private var id: ConnectionID?

    init(hub: XenstoreHub) { self.hub = hub }

    func channelActive(context: ChannelHandlerContext) {
        id = hub.attach(SocketEndpoint(channel: context.channel))
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let id else { return }
        let buffer = unwrapInboundIn(data)
        buffer.withUnsafeReadableBytes { hub.received($0, from: id) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let id { hub.writable(id) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let id { hub.detach(id) }
        id = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A client's reset or broken pipe ends only that client.
        hub.logger.debug("socket client error: \(error)")
        context.close(promise: nil)
    }
}

/// ``XenstoreEndpoint`` over a NIO channel; used on the channel's (the hub's) loop.
///
/// Messages written between two flushes are gathered into one buffer and handed to
/// the channel once: one trip through the pipeline per batch, not two per message.
final class SocketEndpoint: XenstoreEndpoint {
    private let channel: any Channel
    private var pending: ByteBuffer?
    /// Gathered bytes beyond which the endpoint reports itself not writable (NIO's
    /// default high watermark), so the hub keeps the rest in its bounded queue.
    static let gatherLimit = 64 * 1024

    init(channel: any Channel) { self.channel = channel }

    var isWritable: Bool { channel.isWritable && (pending?.readableBytes ?? 0) < Self.gatherLimit }

    func write(_ bytes: [UInt8]) {
        if pending == nil { pending = channel.allocator.buffer(capacity: bytes.count) }
        pending?.writeBytes(bytes)
    }

    func flush() {
        guard let pending else { return }
        self.pending = nil
        channel.writeAndFlush(pending, promise: nil)
    }

    func setReading(_ enabled: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: enabled).whenFailure { _ in }
        if enabled { channel.read() }
    }

    func close() { channel.close(promise: nil) }
}
