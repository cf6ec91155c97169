//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The Unix-socket transport, on NIO.
public final class SocketClientTransport: XenstoreClientTransport {
    private let path: String
    private let group: any EventLoopGroup
    private let channelBox = Mutex<(any Channel)?>(nil)
    private let executorBox = Mutex<EventLoopTaskExecutor?>(nil)

    public var preferredExecutor: (any TaskExecutor)? { executorBox.withLock { $0 } }

    public init(path: String, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.path = path
        self.group = group
    }

    public func start(_ sink: any XenstoreTransportSink) async throws {
        // A non-blocking connect to a Unix socket whose backlog is full fails with
        // EAGAIN where libxenstore's blocking connect would wait; wait likewise.
        var delay = 1
        while true {
            do {
                let channel = try await ClientBootstrap(group: group)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(SinkHandler(sink: sink))
                        }
                    }
                    .connect(unixDomainSocketPath: path)
                    .get()
                channelBox.withLock { $0 = channel }
                executorBox.withLock { $0 = EventLoopTaskExecutor(eventLoop: channel.eventLoop) }
                return
            } catch let error as IOError where error.errnoCode == EAGAIN && delay < 4096 {
                try await Task.sleep(for: .milliseconds(delay))
                delay *= 2
            }
        }
    }

    public func send(_ bytes: [UInt8]) {
        guard let channel = channelBox.withLock({ $0 }) else { return }
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
    }

    public func close() {
        channelBox.withLock { $0 }?.close(promise: nil)
    }
}

private final class SinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let sink: any XenstoreTransportSink
    private var error: (any Error)?

    init(sink: any XenstoreTransportSink) { self.sink = sink }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        sink.received(buffer.readBytes(length: buffer.readableBytes) ?? [])
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.error = error
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        sink.closed(error)
    }
}
