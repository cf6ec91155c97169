//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Logging
import MetricsEndpoint
import NIOCore
import NIOPosix
import ServiceLifecycle
import SystemExtras
import XenHypervisor
import XenstoreCore

#if canImport(Glibc)
import Glibc
#endif

/// `conch xenstored`: serves the xenstore protocol on a Unix socket (mode 0600) to
/// dom0 tools, until graceful shutdown (SIGTERM/SIGINT through the ServiceGroup).
public struct XenstoredService: Service {
    public struct Configuration: Sendable {
        public var socketPath: String
        public var quotas: Quotas
        /// Replies queued for one client before it stops being read.
        public var maxQueuedMessages: Int

        /// Where guests' rings come from; nil serves the Unix socket only.
        public var hypervisor: (any PrivilegedHypervisor)?
        /// Where every change is recorded, so that a restarted daemon (after a crash
        /// or `kill -9`) resumes with the same store, domains and guest rings; nil
        /// keeps the store in memory only.
        public var journalPath: String?
        /// `HOST:PORT` to serve Prometheus' `GET /metrics` on; nil: no endpoint.
        public var metricsAddress: String?

        public init(
            socketPath: String,
            quotas: Quotas = .cxenstored417,
            maxQueuedMessages: Int = 256,
            hypervisor: (any PrivilegedHypervisor)? = nil,
            journalPath: String? = nil,
            metricsAddress: String? = nil
        ) {
            self.socketPath = socketPath
            self.quotas = quotas
            self.maxQueuedMessages = maxQueuedMessages
            self.hypervisor = hypervisor
            self.journalPath = journalPath
            self.metricsAddress = metricsAddress
        }
    }

    public let configuration: Configuration
    public let logger: Logger
    private let ready: (@Sendable () -> Void)?

    /// - Parameter ready: called once the socket accepts connections.
    public init(configuration: Configuration, logger: Logger, ready: (@Sendable () -> Void)? = nil) {
        self.configuration = configuration
        self.logger = logger
        self.ready = ready
    }

    public func run() async throws {
        // One thread: the engine is confined to it, so requests need no locks.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let journal = try configuration.journalPath.map { try JournalFile.open(path: $0) }
        let hub = try await group.next().submit {
            XenstoreHub(
                eventLoop: group.next(),
                quotas: configuration.quotas,
                maxQueuedMessages: configuration.maxQueuedMessages,
                journal: journal,
                logger: logger
            )
        }.get()
        let path = configuration.socketPath
        // Created 0600 from the start: no window in which another user could connect.
        let previousMask = umask(0o177)
        let server: any Channel
        do {
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 512)
                // Out of descriptors, stop accepting for a while instead of spinning.
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler())
                    }
                }
                .childChannelInitializer { [logger] channel in
                    // Every socket client is privileged dom0, so only the host's toolstack may be one.
                    channel.checkHostToolstackPeer().flatMapThrowing { refusal in
                        if let refusal {
                            logger.warning("refused a connection to the xenstored socket: \(refusal)")
                            throw refusal
                        }
                        try channel.pipeline.syncOperations.addHandler(XenstoreSocketHandler(hub: hub))
                    }
                }
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
                .get()
            umask(previousMask)
        } catch {
            umask(previousMask)
            try? await group.shutdownGracefully()
            throw error
        }
        logger.info("xenstored listening", metadata: ["socket": "\(path)"])
        var metricsServer: MetricsServer?
        if let address = configuration.metricsAddress {
            let metrics = XenstoredMetrics()
            try await group.next().submit { hub.metrics = metrics }.get()
            metricsServer = try await MetricsServer.start(address, metrics: metrics.metrics, group: group) {
                try? await hub.eventLoop.submit { metrics.scraped(connections: hub.connectionCount) }.get()
            }
            logger.info("metrics for Prometheus on http://\(metricsServer!.address)/metrics")
        }
        var rings: RingDomains?
        if let hypervisor = configuration.hypervisor {
            let domains = RingDomains(hypervisor: hypervisor, group: group, logger: logger)
            try await group.next().submit { hub.domainRings = domains }.get()
            try await domains.start(hub: hub)
            try await group.next().submit { domains.recover(hub: hub) }.get()
            rings = domains
            logger.info("serving guest rings through the hypervisor")
            // In a real dom0, dom0's own kernel reaches xenstore through a ring too.
            if let local = hypervisor as? any LocalXenstore, let ring = try local.localXenstoreRing() {
                try await group.next().submit {
                    try domains.serveLocal(page: ring.page, port: ring.port, hub: hub)
                }.get()
                logger.info("serving dom0's kernel ring", metadata: ["port": "\(ring.port.rawValue)"])
            }
        }
        ready?()

        await withGracefulShutdownHandler {
            try? await server.closeFuture.get()
        } onGracefulShutdown: {
            server.close(promise: nil)
        }
        try? await group.next().submit {
            rings?.stop()
            hub.closeAll()
        }.get()
        metricsServer?.close()
        unlink(path)
        try? await group.shutdownGracefully()
        logger.info("xenstored stopped")
    }
}
