//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import ConsoleKeeper
import Foundation
import Logging
import MetricsEndpoint
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

/// consoled's core: discovers every domain's consoles through xenstore, maps their
/// rings, binds their event channels, connects each to a pty or a socket, and
/// moves bytes with ``ConsolePump`` deciding how much and when.
///
/// An actor whose executor is the NIO event loop that runs every console's
/// channels, so NIO handlers reach it with `assumeIsolated` and nothing needs a lock.
///
/// One file per job: this one holds the state and the lifecycle;
/// `+Discovery` finds domains and consoles in xenstore and runs the xenbus backend
/// handshake (sinks, sessions, the keeper's attach); `+Supervision` watches what
/// consoled depends on (the sink keeper, the hypervisor) and tears consoles down;
/// `+Pumping` moves bytes; `+NIO` is the plumbing and the console handlers;
/// `+Control` the stats and control sockets.
public actor ConsoleDaemon {
    public struct Configuration: Sendable {
        public var logDirectory: String
        public var statsSocket: String?
        /// Where clients ask for console 0's history before attaching (`history <domid>\n`).
        public var controlSocket: String?
        /// Where `conch console` and `conch web` keep their session locks
        /// (``ConsoleSessionLock``): stats and metrics report the holder of each.
        public var sessionLockDirectory: String?
        public var timestamps: Bool
        /// Write guests' ESC bytes to logs as `.` (xenconsoled `--replace-escape`).
        public var replaceEscape: Bool
        public var logRotation: LogRotationPolicy
        public var rate: TokenBucket.Configuration
        public var historyCapacity: Int
        /// Never touch the `connection` byte (a pre-4.21 backend).
        public var legacyFlag: Bool
        /// `HOST:PORT` to serve Prometheus' `GET /metrics` on; nil: no endpoint.
        public var metricsAddress: String?
        /// The domain consoled runs in: its backend tree is `/local/domain/<this>/backend/console`.
        public var backendDomid: DomID = .dom0
        /// Connects to (or starts) the process that holds socket channels' listeners
        /// and clients across consoled restarts (``SinkKeeper``); socket channels need
        /// it. Called at start and again whenever the keeper dies.
        public var keeper: (@Sendable () throws -> KeeperClient)?

        public init(
            logDirectory: String,
            statsSocket: String? = nil,
            controlSocket: String? = nil,
            sessionLockDirectory: String? = nil,
            timestamps: Bool = false,
            replaceEscape: Bool = false,
            logRotation: LogRotationPolicy = .disabled,
            rate: TokenBucket.Configuration = .default,
            historyCapacity: Int = ConsoleHistory.defaultCapacity,
            legacyFlag: Bool = false,
            metricsAddress: String? = nil,
            keeper: (@Sendable () throws -> KeeperClient)? = nil
        ) {
            self.metricsAddress = metricsAddress
            self.logDirectory = logDirectory
            self.statsSocket = statsSocket
            self.controlSocket = controlSocket
            self.sessionLockDirectory = sessionLockDirectory
            self.timestamps = timestamps
            self.replaceEscape = replaceEscape
            self.logRotation = logRotation
            self.rate = rate
            self.historyCapacity = historyCapacity
            self.legacyFlag = legacyFlag
            self.keeper = keeper
        }
    }

    public nonisolated let eventLoop: any EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { eventLoop.executor.asUnownedSerialExecutor() }

    let configuration: Configuration
    let hypervisor: any PrivilegedHypervisor
    let store: XenstoreClient
    let logger: Logger
    var sessions: [ConsoleKey: ConsoleSession] = [:]
    /// Channel sinks published before their frontend connected (see ``prepareSecondary``).
    var prepared: [ConsoleKey: PreparedSink] = [:]
    var watchedDomains: [DomID: [Task<Void, Never>]] = [:]
    /// Live domains an operator released (``stopServing(_:)``): not served again.
    var stoppedServing: Set<DomID> = []
    var statsServer: (any Channel)?
    var metricsServer: MetricsServer?
    let metrics = ConsoledMetrics()
    var controlServer: (any Channel)?
    /// The running keeper (a thread watches its process, to restart it).
    var keeperClient: KeeperClient?
    var hypervisorWatch: (any Channel)?
    let started = ContinuousClock.now
    var stopping = false
    /// Bumped at every keeper (re)start: a watch of an older keeper is stale.
    var keeperGeneration = 0

    public init(
        configuration: Configuration,
        hypervisor: any PrivilegedHypervisor,
        store: XenstoreClient,
        eventLoop: any EventLoop,
        logger: Logger
    ) {
        self.configuration = configuration
        self.hypervisor = hypervisor
        self.store = store
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// Nanoseconds since the daemon started (the pump's clock).
    var now: UInt64 {
        let elapsed = started.duration(to: .now)
        return UInt64(elapsed.components.seconds) &* 1_000_000_000
            &+ UInt64(elapsed.components.attoseconds / 1_000_000_000)
    }

    // MARK: - Lifecycle

    /// Starts discovery; returns once the existing domains were scanned.
    public func start() async throws {
        // For the toolstack: whether a DISCONNECTED page will ever be marked CONNECTED.
        // Written before the sockets exist, so that whoever sees consoled serve sees it.
        try? await store.write(ConsoleLayout.consoledSetsFlag, configuration.legacyFlag ? "0" : "1")
        try FileManager.default.createDirectory(atPath: configuration.logDirectory, withIntermediateDirectories: true)
        if let path = configuration.statsSocket {
            statsServer = try await startServer(path) { daemon in StatsHandler(daemon: daemon) }
        }
        if let path = configuration.controlSocket {
            controlServer = try await startServer(path) { daemon in ControlHandler(daemon: daemon) }
        }
        if let address = configuration.metricsAddress {
            let server = try await MetricsServer.start(address, metrics: metrics.metrics, group: eventLoop) {
                [weak self] in await self?.recordMetrics()
            }
            metricsServer = server
            logger.info("metrics for Prometheus on http://\(server.address)/metrics")
        }
        if configuration.keeper != nil { try await startKeeper() }
        try await monitorHypervisor()
        let introduced = try await store.watch("@introduceDomain", token: "domlist-intro")
        Task { [weak self] in
            for await _ in introduced { await self?.trackIntroduced() }
        }
        let released = try await store.watch("@releaseDomain", token: "domlist-release")
        Task { [weak self] in
            for await _ in released { await self?.rescanDomains() }
        }
        rescanDomains()
    }

    /// Orderly stop (a restart or an upgrade as much as a shutdown): every console
    /// is torn down but stays CONNECTED. Its ring keeps what the guest writes
    /// meanwhile and the next consoled drains it; a flag-aware guest (Linux 7.1
    /// drops writes while DISCONNECTED) loses nothing. Only a backend that goes away
    /// for good says DISCONNECTED: see ``release(_:)`` and the teardown of a domain.
    public func stop() {
        stopping = true
        for key in sessions.keys.sorted() { teardown(key, reason: "consoled stopping", disconnect: false) }
        for key in prepared.keys.sorted() { discardPrepared(key) }
        hypervisorWatch?.close(promise: nil)
        hypervisorWatch = nil
        keeperClient?.quit()
        for tasks in watchedDomains.values { for task in tasks { task.cancel() } }
        watchedDomains.removeAll()
        metricsServer?.close()
        statsServer?.close(promise: nil)
        if let path = configuration.statsSocket { unlink(path) }
        controlServer?.close(promise: nil)
        if let path = configuration.controlSocket { unlink(path) }
    }

    /// SIGHUP: reopen every log file (logrotate moved them).
    public func reopenLogs() {
        for session in sessions.values { session.log?.reopen() }
        logger.info("log files reopened")
    }

    public func statistics() -> ConsoledStats {
        var consoles = sessions.keys.sorted().compactMap { sessions[$0]?.stats }
        if let directory = configuration.sessionLockDirectory {
            for index in consoles.indices {
                let lock = ConsoleSessionLock.path(
                    directory: directory,
                    domid: consoles[index].domid,
                    devid: consoles[index].devid
                )
                consoles[index].sessionPid = ConsoleSessionLock.holder(path: lock)
            }
        }
        // One question to the keeper for every socket channel's client (nil if it
        // cannot answer: then nothing is claimed either way).
        if consoles.contains(where: { $0.connection == "socket" }),
            let connected = try? keeperClient?.connectedClients()
        {
            for index in consoles.indices where consoles[index].connection == "socket" {
                let key = ConsoleKey(domid: DomID(consoles[index].domid), devid: consoles[index].devid)
                consoles[index].clientConnected = connected.contains(key.description)
            }
        }
        return ConsoledStats(consoles: consoles, totals: ConsoleCounters.total(of: consoles.map(\.counters)))
    }

    public var servedConsoles: [ConsoleKey] { sessions.keys.sorted() }

    func recordMetrics() { metrics.record(statistics()) }

    /// A client is about to open console 0's pty: what it missed — the history,
    /// with its drop marker. Output written to the pty while nobody read it (and
    /// any still queued for it) is discarded first: it is older than, or part
    /// of, the history, and would otherwise arrive twice and out of order.
    /// nil when console 0 of `domid` is not served.
    public func historyForAttach(_ domid: DomID) async -> [UInt8]? {
        let key = ConsoleKey(domid: domid, devid: 0)
        guard let session = sessions[key], let pty = session.pty else { return nil }
        // A fresh channel on the master; closing the old one drops its queued writes.
        guard let fresh = try? await attachStream(descriptor: pty.master.rawValue, key: key),
            sessions[key] === session
        else { return nil }
        let old = session.ptyChannel
        session.ptyChannel = fresh
        old?.close(promise: nil)
        tcflush(pty.slave.rawValue, TCIFLUSH)
        session.pump.updateSink(session.sinkReadiness)
        return session.pump.replayForNewClient()
    }
}
