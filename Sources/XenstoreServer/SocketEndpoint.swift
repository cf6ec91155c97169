//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import NIOCore
import XenABI
import XenstoreCore
import XenstoreWire

/// The Unix-socket transport: one NIO child channel per dom0 client.
final class XenstoreSocketHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let hub: XenstoreHub
    private var id: ConnectionID?

    init(hub: XenstoreHub) { self.hub = hub }

    func channelActive(context: ChannelHandlerContext) {
        id = hub.attach(SocketEndpoint(context: context))
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
    /// The transport handler's place in the pipeline: replies start there, not at
    /// the pipeline's tail (the handler is the pipeline's only one).
    private let context: ChannelHandlerContext
    // SAFETY: unchecked for exclusivity: used on the channel's loop only, and no
    // access stays open across a call out of this class.
    @exclusivity(unchecked) private var pending: ByteBuffer?
    /// The last flushed buffer, kept to gather the next batch into: the channel has
    /// written it by then (at once, on a socket that takes it), so it is ours alone
    /// again and `clear()` reuses it instead of allocating. (If the channel still holds
    /// it, `clear()` allocates fresh storage: never a copy, never a change to its bytes.)
    @exclusivity(unchecked) private var spare: ByteBuffer?
    /// The largest buffer kept as ``spare``, so one burst does not pin its memory.
    static let spareLimit = 16 * 1024
    /// Gathered bytes beyond which the endpoint reports itself not writable (NIO's
    /// default high watermark), so the hub keeps the rest in its bounded queue.
    static let gatherLimit = 64 * 1024

    init(context: ChannelHandlerContext) {
        self.context = context
        self.channel = context.channel
    }

    var isWritable: Bool { channel.isWritable && (pending?.readableBytes ?? 0) < Self.gatherLimit }

    func write(_ message: XenstoreMessage) {
        // Taken out while it grows, so that it stays uniquely referenced.
        var buffer: ByteBuffer
        if let gathered = pending.take() {
            buffer = gathered
        } else if var reused = spare.take() {
            reused.clear()
            buffer = reused
        } else {
            buffer = channel.allocator.buffer(capacity: message.encodedCount)
        }
        // SAFETY: NIO hands a region of at least `encodedCount` writable bytes, used only
        // inside the closure; exactly that many are written and reported.
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: message.encodedCount) { destination in
            message.store(into: destination)
            return message.encodedCount
        }
        pending = buffer
    }

    func flush() {
        guard let pending else { return }
        self.pending = nil
        spare = pending.capacity <= Self.spareLimit ? pending : nil
        context.writeAndFlush(NIOAny(pending), promise: nil)
    }

    func setReading(_ enabled: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: enabled).whenFailure { _ in }
        if enabled { channel.read() }
    }

    func close() { channel.close(promise: nil) }
}
