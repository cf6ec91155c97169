//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SystemExtras
import XenABI
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// Conch's device model for PV guests: what libxl starts in place of QEMU
/// (`device_model_override`) when a guest has channels. It does not move a byte
/// itself: it hands the guest's `ioemu` consoles to consoled (a dom0-owned node
/// consoled watches, ``ConsoleLayout/consoleHandoff(of:backend:)``) and satisfies
/// libxl's side of the device-model protocol — the `state` node libxl waits for,
/// QMP on the sockets libxl opened — until libxl stops it (SIGHUP at destroy).
/// Without a QEMU per guest, channels get consoled's guarantees: they survive a
/// consoled restart and lose nothing.
public final class DeviceModelShim: Sendable {
    public let arguments: DeviceModelArguments
    let logger: Logger
    private let running: NIOLockedValueBox<Bool>
    private let quit = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)
    private let store = NIOLockedValueBox<XenstoreClient?>(nil)

    public init(arguments: DeviceModelArguments, logger: Logger) {
        self.arguments = arguments
        self.logger = logger
        running = NIOLockedValueBox(!arguments.startStopped)
    }

    /// Serves until `stopped` returns (a signal) or a QMP `quit`.
    public func run(until stopped: @escaping @Sendable () async -> Void) async throws {
        let domid = arguments.domid
        let store = try await XenstoreClient.connect()
        self.store.withLockedValue { $0 = store }
        defer { store.close() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var servers: [any Channel] = []
        do {
            for monitor in arguments.monitors { servers.append(try await serveQMP(monitor, group: group)) }
            // consoled serves this domain's ioemu consoles from now on; then libxl may go on.
            let home = ConsoleLayout.deviceModel(of: domid, backend: .dom0)
            try await store.write(ConsoleLayout.consoleHandoff(of: domid, backend: .dom0), "consoled")
            if running.withLockedValue({ $0 }) { try await store.write(home + "/state", "running") }
            logger.info(
                "device model running",
                metadata: ["domid": "\(domid.rawValue)", "channels": "\(arguments.channels.count)"]
            )
            await withTaskGroup(of: Void.self) { tasks in
                tasks.addTask { await stopped() }
                tasks.addTask { [quit] in
                    await withCheckedContinuation { continuation in
                        quit.withLockedValue { $0 = { continuation.resume() } }
                    }
                }
                await tasks.next()
                quit.withLockedValue { $0?() }
                tasks.cancelAll()
            }
        } catch {
            for server in servers { try? await server.close() }
            try? await group.shutdownGracefully()
            throw error
        }
        for server in servers { try? await server.close() }
        for case .path(let path) in arguments.monitors { unlink(path) }
        try? await group.shutdownGracefully()
        logger.info("device model stopped", metadata: ["domid": "\(domid.rawValue)"])
    }

    /// What each QMP command answers.
    func answer(_ command: String, _ arguments: [String: Any]) -> QMPSession.Answer {
        switch command {
        case "query-status":
            let isRunning = running.withLockedValue { $0 }
            return .value(["status": isRunning ? "running" : "prelaunch", "running": isRunning, "singlestep": false])
        case "cont":
            // Started with -S: libxl waited on QMP, not on the state node; now it is running.
            let wasRunning = running.withLockedValue { value in
                defer { value = true }
                return value
            }
            let path = ConsoleLayout.deviceModel(of: self.arguments.domid, backend: .dom0) + "/state"
            if !wasRunning, let store = store.withLockedValue({ $0 }) {
                Task { try? await store.write(path, "running") }
            }
            return .value([String: Any]())
        case "query-chardev":
            var devices: [[String: Any]] = []
            for channel in self.arguments.channels {
                devices.append([
                    "label": "libxl-channel\(channel.devid)", "filename": "conch-consoled", "frontend-open": false,
                ])
            }
            return .value(devices)
        case "query-vnc":
            return .value(["enabled": false])
        case "query-commands":
            return .value(
                ["qmp_capabilities", "query-status", "cont", "query-chardev", "query-vnc", "quit"].map { ["name": $0] }
            )
        case "quit":
            quit.withLockedValue { $0?() }
            return .value([String: Any]())
        default:
            return .error(
                class: "CommandNotFound",
                description: "The command \(command) has not been found (Conch's device model serves consoles only)"
            )
        }
    }

    private func serveQMP(
        _ monitor: DeviceModelArguments.Monitor,
        group: MultiThreadedEventLoopGroup
    ) async throws
        -> any Channel
    {
        let bootstrap = ServerBootstrap(group: group)
            .childChannelInitializer { [self] channel in
                channel.checkHostToolstackPeer().flatMapThrowing { refusal in
                    if let refusal {
                        self.logger.warning("refused a QMP connection: \(refusal)")
                        throw refusal
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        QMPHandler(
                            session: QMPSession { [self] command, arguments in
                                answer(command, arguments)
                            }
                        )
                    )
                }
            }
        switch monitor {
        case .path(let path):
            let previous = umask(0o177)
            defer { umask(previous) }
            return try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        case .descriptor(let fd):
            return try await bootstrap.withBoundSocket(fd).get()
        }
    }
}

/// One QMP connection: the greeting, then a reply for each command.
private final class QMPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var session: QMPSession

    init(session: QMPSession) { self.session = session }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(
            wrapOutboundOut(context.channel.allocator.buffer(bytes: QMPSession.greeting())),
            promise: nil
        )
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        let (replies, close) = session.feed(bytes)
        if !replies.isEmpty {
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: replies)), promise: nil)
        }
        if close { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}
