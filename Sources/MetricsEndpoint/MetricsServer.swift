//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CoreMetrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import SystemExtras

/// A daemon's metrics: a Prometheus registry of its own, recorded through
/// swift-metrics types made with ``factory`` (no process-wide bootstrap, so two
/// daemons in one test process keep separate figures).
public final class DaemonMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    public let factory: PrometheusMetricsFactory

    public init() { factory = PrometheusMetricsFactory(registry: registry) }

    /// The registry in Prometheus' text exposition format.
    public func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}

/// `GET /metrics` over HTTP/1.1 for Prometheus to scrape; anything else is 404
/// or 405. `beforeScrape` runs first, for figures a daemon computes on demand
/// rather than on every byte it moves.
public final class MetricsServer: Sendable {
    public let localAddress: SocketAddress
    private let channel: any Channel

    public struct BadAddress: Error, CustomStringConvertible {
        public let description: String
    }

    /// Listens on `address` (`HOST:PORT`; port 0 picks one, see ``localAddress``).
    public static func start(
        _ address: String,
        metrics: DaemonMetrics,
        group: any EventLoopGroup,
        beforeScrape: @escaping @Sendable () async -> Void = {}
    ) async throws -> MetricsServer {
        guard let listen = ListenAddress(parsing: address) else {
            throw BadAddress(description: "--metrics takes HOST:PORT (127.0.0.1:9110, say), not '\(address)'")
        }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(ScrapeHandler(metrics: metrics, beforeScrape: beforeScrape))
                }
            }
            .bind(host: listen.host, port: listen.port)
            .get()
        return MetricsServer(channel: channel, localAddress: channel.localAddress!)
    }

    private init(channel: any Channel, localAddress: SocketAddress) {
        self.channel = channel
        self.localAddress = localAddress
    }

    /// `HOST:PORT` as it listens.
    public var address: String { "\(localAddress.ipAddress ?? "?"):\(localAddress.port ?? 0)" }

    public func close() { channel.close(promise: nil) }
}

private final class ScrapeHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let metrics: DaemonMetrics
    let beforeScrape: @Sendable () async -> Void
    private var request: HTTPRequestHead?

    init(metrics: DaemonMetrics, beforeScrape: @escaping @Sendable () async -> Void) {
        self.metrics = metrics
        self.beforeScrape = beforeScrape
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard path == "/metrics" else { return send(.notFound, "not found: try /metrics\n", head, context) }
        guard head.method == .GET || head.method == .HEAD else {
            return send(.methodNotAllowed, "only GET /metrics\n", head, context)
        }
        let loop = context.eventLoop
        let (metrics, beforeScrape) = (metrics, beforeScrape)
        let context = NIOLoopBound(context, eventLoop: loop)
        let promise = loop.makePromise(of: [UInt8].self)
        promise.completeWithTask {
            await beforeScrape()
            return metrics.exposition()
        }
        promise.futureResult.whenSuccess { [self] body in
            send(.ok, body, head, context.value, contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
    }

    private func send(
        _ status: HTTPResponseStatus,
        _ text: String,
        _ head: HTTPRequestHead,
        _ context: ChannelHandlerContext
    ) {
        send(status, Array(text.utf8), head, context, contentType: "text/plain; charset=utf-8")
    }

    private func send(
        _ status: HTTPResponseStatus,
        _ body: [UInt8],
        _ head: HTTPRequestHead,
        _ context: ChannelHandlerContext,
        contentType: String
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        let response = HTTPResponseHead(version: head.version, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(response)), promise: nil)
        if head.method != .HEAD {
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))),
                promise: nil
            )
        }
        let keepAlive = head.isKeepAlive
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
