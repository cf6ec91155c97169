//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CConchShims
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

/// consoled's core: discovers every domain's consoles through xenstore, maps their
/// rings, binds their event channels, connects each to a pty or a socket, and
/// moves bytes with ``ConsolePump`` deciding how much and when.
///
/// An actor whose executor is the NIO event loop that runs every console's
/// channels, so NIO handlers reach it with `assumeIsolated` and nothing needs a lock.
public actor ConsoleDaemon {
    public struct Configuration: Sendable {
        public var logDirectory: String
        public var statsSocket: String?
        /// Where clients ask for console 0's history before attaching (`history <domid>\n`).
        public var controlSocket: String?
        public var timestamps: Bool
        public var logRotation: LogRotationPolicy
        public var rate: TokenBucket.Configuration
        public var historyCapacity: Int
        /// Never touch the `connection` byte (a pre-4.21 backend).
        public var legacyFlag: Bool
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
            timestamps: Bool = false,
            logRotation: LogRotationPolicy = .disabled,
            rate: TokenBucket.Configuration = .default,
            historyCapacity: Int = ConsoleHistory.defaultCapacity,
            legacyFlag: Bool = false,
            keeper: (@Sendable () throws -> KeeperClient)? = nil
        ) {
            self.logDirectory = logDirectory
            self.statsSocket = statsSocket
            self.controlSocket = controlSocket
            self.timestamps = timestamps
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
    private var sessions: [ConsoleKey: ConsoleSession] = [:]
    /// Channel sinks published before their frontend connected (see ``prepareSecondary``).
    private var prepared: [ConsoleKey: PreparedSink] = [:]
    private var watchedDomains: [DomID: [Task<Void, Never>]] = [:]
    /// Live domains an operator released (``stopServing(_:)``): not served again.
    private var stoppedServing: Set<DomID> = []
    private var statsServer: (any Channel)?
    private var controlServer: (any Channel)?
    /// The running keeper (a thread watches its process, to restart it).
    private var keeperClient: KeeperClient?
    private var hypervisorWatch: (any Channel)?
    private let started = ContinuousClock.now
    private var stopping = false

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
    private var now: UInt64 {
        let elapsed = started.duration(to: .now)
        return UInt64(elapsed.components.seconds) &* 1_000_000_000
            &+ UInt64(elapsed.components.attoseconds / 1_000_000_000)
    }

    // MARK: - Lifecycle

    /// Starts discovery; returns once the existing domains were scanned.
    public func start() async throws {
        try FileManager.default.createDirectory(atPath: configuration.logDirectory, withIntermediateDirectories: true)
        if let path = configuration.statsSocket {
            statsServer = try await startServer(path) { daemon in StatsHandler(daemon: daemon) }
        }
        if let path = configuration.controlSocket {
            controlServer = try await startServer(path) { daemon in ControlHandler(daemon: daemon) }
        }
        if configuration.keeper != nil { try await startKeeper() }
        // For the toolstack: whether a DISCONNECTED page will ever be marked CONNECTED.
        try? await store.write(ConsoleLayout.consoledSetsFlag, configuration.legacyFlag ? "0" : "1")
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
        let consoles = sessions.keys.sorted().compactMap { sessions[$0]?.stats }
        return ConsoledStats(consoles: consoles, totals: ConsoleCounters.total(of: consoles.map(\.counters)))
    }

    public var servedConsoles: [ConsoleKey] { sessions.keys.sorted() }

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

    // MARK: - Discovery

    private func rescanDomains() {
        guard !stopping, let domains = try? hypervisor.listDomains() else { return }
        let live = Set(domains.filter { $0.domid != .dom0 && $0.state != .dying }.map(\.domid))
        stoppedServing.formIntersection(live)
        for domid in live.sorted() where watchedDomains[domid] == nil && !stoppedServing.contains(domid) {
            track(domid)
        }
        for domid in watchedDomains.keys.sorted() where !live.contains(domid) { release(domid) }
    }

    /// `@introduceDomain`: start watching domains that have a home in xenstore
    /// (cheaper than asking the hypervisor for every domain, which matters with
    /// a thousand of them).
    private func trackIntroduced() async {
        guard !stopping, let names = try? await store.directory("/local/domain") else { return }
        for domid in names.compactMap({ UInt16($0) }).map({ DomID($0) }).sorted() {
            if domid != .dom0, watchedDomains[domid] == nil, !stoppedServing.contains(domid), !stopping {
                track(domid)
            }
        }
    }

    /// Watches a domain's console 0 directory, the backend tree of its other
    /// consoles (ours, dom0-owned: the list of devices comes from here) and its
    /// device directory (guest-owned: only a hint that a frontend state changed).
    private func track(_ domid: DomID) {
        let d = domid.rawValue
        var tasks: [Task<Void, Never>] = []
        for (path, token, devices) in watchedPaths(domid) {
            tasks.append(
                Task { [weak self, store] in
                    guard let events = try? await store.watch(path, token: token) else { return }
                    for await _ in events {
                        guard let self else { return }
                        if devices { await self.devicesChanged(domid) } else { await self.primaryChanged(domid) }
                    }
                }
            )
        }
        watchedDomains[domid] = tasks
        logger.info("domain found", metadata: ["domid": "\(d)"])
    }

    private func watchedPaths(_ domid: DomID) -> [(path: String, token: String, devices: Bool)] {
        let d = domid.rawValue
        return [
            (ConsoleLayout.frontend(domid, devid: 0), "dom\(d)", false),
            (ConsoleLayout.backends(of: domid, backend: configuration.backendDomid), "be\(d)", true),
            (ConsoleLayout.devices(domid), "dev\(d)", true),
            // Conch's device model hands the domain's ioemu consoles over here.
            (ConsoleLayout.consoleHandoff(of: domid, backend: configuration.backendDomid), "dm\(d)", true),
        ]
    }

    /// The domain is gone (`@releaseDomain`): flush what is readable, close sinks,
    /// remove socket files, unmap.
    private func release(_ domid: DomID, reason: String = "domain released") {
        for task in watchedDomains.removeValue(forKey: domid) ?? [] { task.cancel() }
        let watched = watchedPaths(domid)
        Task { [store] in
            for (path, token, _) in watched { try? await store.unwatch(path, token: token) }
        }
        for key in sessions.keys.sorted() where key.domid == domid { teardown(key, reason: reason) }
        for key in prepared.keys.sorted() where key.domid == domid { discardPrepared(key) }
        logger.info("\(reason)", metadata: ["domid": "\(domid)"])
    }

    /// Stops serving a live domain for good, as an operator asks (`conch
    /// console-release`): its consoles are torn down and marked DISCONNECTED, so
    /// that a flag-aware guest stops waiting on rings nobody will drain, and this
    /// consoled leaves the domain alone until it is gone. Returns how many consoles
    /// were served, or nil if the domain was not.
    public func stopServing(_ domid: DomID) -> Int? {
        guard watchedDomains[domid] != nil else { return nil }
        let served = sessions.keys.filter { $0.domid == domid }.count
        stoppedServing.insert(domid)
        release(domid, reason: "domain released by the operator")
        return served
    }

    private func read(_ path: String) async -> String? { try? await store.readString(path) }

    private func primaryChanged(_ domid: DomID) async {
        let key = ConsoleKey(domid: domid, devid: 0)
        guard !stopping, sessions[key] == nil, watchedDomains[domid] != nil else { return }
        let base = ConsoleLayout.frontend(domid, devid: 0)
        guard let ringRef = await read(base + "/ring-ref").flatMap({ UInt64($0) }),
            let port = await read(base + "/port").flatMap({ UInt32($0) })
        else { return }  // not written yet: the watch fires again when it is
        if let type = await read(base + "/type"), type != "xenconsoled" { return }
        let name = await read(ConsoleLayout.home(domid) + "/name") ?? "d\(domid.rawValue)"
        guard sessions[key] == nil else { return }
        do {
            // Grant 0 first, as xenconsoled does; the frame number as a fallback.
            let page: GuestPage
            do {
                page = try hypervisor.mapGrant(domid, ref: .console, readOnly: false)
            } catch {
                page = try hypervisor.mapForeign(domid, frame: PageFrame(ringRef), readOnly: false)
            }
            let channel = try hypervisor.bindInterdomain(remote: domid, remotePort: EvtchnPort(port))
            let session = makeSession(key: key, name: name, sink: .pty, page: page, channel: channel, primary: true)
            if let file = ConsoleLogName.fileName(domainName: name) {
                session.log = ConsoleLogFile(
                    path: configuration.logDirectory + "/" + file,
                    timestamps: configuration.timestamps,
                    rotation: configuration.logRotation
                )
            }
            try await connect(session, ttyNode: base + "/tty")
        } catch {
            logger.warning("cannot connect console 0: \(error)", metadata: ["domid": "\(domid)"])
        }
    }

    /// A console device of ours: where its frontend is (derived, never read from a
    /// node the guest could have written) and where its backend directory is.
    struct DeviceLocation {
        let key: ConsoleKey
        let frontend: String
        let backend: String
    }

    /// Reconciles a domain's secondary consoles with our backend tree. The devices
    /// are the ones the toolstack put under `backend/console/<d>`; a directory the
    /// guest made up under `device/console` has no backend and is ignored.
    private func devicesChanged(_ domid: DomID) async {
        guard !stopping, watchedDomains[domid] != nil else { return }
        let backends = ConsoleLayout.backends(of: domid, backend: configuration.backendDomid)
        let devids = ((try? await store.directory(backends)) ?? []).compactMap { Int($0) }.filter { $0 > 0 }
        for devid in devids.sorted() {
            let device = DeviceLocation(
                key: ConsoleKey(domid: domid, devid: devid),
                frontend: ConsoleLayout.frontend(domid, devid: devid),
                backend: ConsoleLayout.backend(of: domid, devid: devid, backend: configuration.backendDomid)
            )
            guard await belongs(device) else { continue }
            let key = device.key
            let state = await read(device.frontend + "/state").flatMap { XenbusState(nodeValue: $0) }
            switch state {
            case .initialising, .initWait:
                if sessions[key] == nil, prepared[key] == nil { await prepareSecondary(device) }
            case .initialised, .connected:
                if sessions[key] == nil { await connectSecondary(device) }
            case .closing, .closed:
                if sessions[key] != nil {
                    teardown(key, reason: "frontend \(state!)")
                    try? await store.write(device.backend + "/state", "\(XenbusState.closed.rawValue)")
                } else if prepared[key] != nil {
                    discardPrepared(key)
                }
            default:
                continue
            }
        }
        for key in sessions.keys.sorted() where key.domid == domid && key.devid > 0 && !devids.contains(key.devid) {
            teardown(key, reason: "device removed")
        }
        for key in prepared.keys.sorted() where key.domid == domid && !devids.contains(key.devid) {
            discardPrepared(key)
        }
    }

    /// The toolstack's backend directory names this very frontend (`frontend-id`
    /// and `frontend`); anything else is a misconfiguration we do not serve.
    private func belongs(_ device: DeviceLocation) async -> Bool {
        let frontendID = await read(device.backend + "/frontend-id")
        let frontend = await read(device.backend + "/frontend")
        guard frontendID == String(device.key.domid.rawValue), frontend == device.frontend else {
            logger.warning(
                "backend directory does not name its frontend; not serving it",
                metadata: [
                    "console": "\(device.key)", "frontend-id": "\(frontendID ?? "-")", "frontend": "\(frontend ?? "-")",
                ]
            )
            return false
        }
        return true
    }

    /// Where a secondary console's bytes go, from its backend directory (which only
    /// dom0 writes); nil when the nodes are incomplete or another backend serves it:
    /// an `ioemu` console is the device model's, so consoled serves it only when
    /// the domain's device model is Conch's and handed it over.
    private func sinkOf(_ device: DeviceLocation) async -> (name: String, sink: SinkSpec)? {
        switch await read(device.frontend + "/type") {
        case nil, "xenconsoled":
            break
        case "ioemu":
            let handoff = ConsoleLayout.consoleHandoff(of: device.key.domid, backend: configuration.backendDomid)
            guard await read(handoff) != nil else { return nil }
        default:
            return nil
        }
        let name = await read(device.backend + "/name") ?? "console\(device.key.devid)"
        switch await read(device.backend + "/connection") {
        case "socket":
            guard let path = await read(device.backend + "/path"), path.hasPrefix("/") else {
                logger.warning("socket channel without an absolute path", metadata: ["console": "\(device.key)"])
                return nil
            }
            return (name, .socket(path: path))
        default:
            return (name, .pty)
        }
    }

    /// A new channel whose frontend has not connected yet (its guest may still be
    /// paused): publish its sink now — the socket listens, the pty's path is in
    /// `tty` — and move the backend to InitWait. `conch create` waits for exactly
    /// this before unpausing, and a dom0 agent can attach before the guest runs;
    /// its bytes wait here until the ring is mapped.
    private func prepareSecondary(_ device: DeviceLocation) async {
        let key = device.key
        guard let (name, sink) = await sinkOf(device) else { return }
        guard sessions[key] == nil, prepared[key] == nil else { return }
        let early = PreparedSink(spec: sink)
        prepared[key] = early
        do {
            switch sink {
            case .pty:
                let pty = try PseudoTerminal()
                early.pty = pty
                early.ptyChannel = try await attachStream(descriptor: pty.master.rawValue, key: key)
                try await store.write(device.frontend + "/tty", pty.slavePath)
            case .socket(let path):
                try keeper().open(key: key, path: path, name: name)
            }
            guard prepared[key] === early else { return }  // connected or discarded meanwhile
            if await read(device.backend + "/state") == "\(XenbusState.initialising.rawValue)" {
                try await store.write(device.backend + "/state", "\(XenbusState.initWait.rawValue)")
            }
            logger.debug("channel sink published", metadata: ["console": "\(key)"])
        } catch {
            logger.warning("cannot publish channel sink: \(error)", metadata: ["console": "\(key)"])
            discardPrepared(key)
        }
    }

    private func discardPrepared(_ key: ConsoleKey) {
        guard let early = prepared.removeValue(forKey: key) else { return }
        early.ptyChannel?.close(promise: nil)
        if case .socket = early.spec { keeperClient?.close(key: key) }
    }

    private func connectSecondary(_ device: DeviceLocation) async {
        let key = device.key
        guard let ringRef = await read(device.frontend + "/ring-ref").flatMap({ UInt32($0) }),
            let port = await read(device.frontend + "/port").flatMap({ UInt32($0) }),
            let (name, described) = await sinkOf(device)
        else { return }
        guard sessions[key] == nil else { return }
        let sink = prepared[key]?.spec ?? described
        do {
            let page = try hypervisor.mapGrant(key.domid, ref: GrantRef(ringRef), readOnly: false)
            let channel = try hypervisor.bindInterdomain(remote: key.domid, remotePort: EvtchnPort(port))
            let session = makeSession(key: key, name: name, sink: sink, page: page, channel: channel, primary: false)
            try await connect(session, ttyNode: device.frontend + "/tty")
            try await store.write(device.backend + "/state", "\(XenbusState.connected.rawValue)")
        } catch {
            logger.warning("cannot connect console: \(error)", metadata: ["console": "\(key)"])
            teardown(key, reason: "connect failed")
        }
    }

    private func makeSession(
        key: ConsoleKey,
        name: String,
        sink: SinkSpec,
        page: GuestPage,
        channel: any EventChannelEndpoint,
        primary: Bool
    ) -> ConsoleSession {
        let pump = ConsolePump(
            ConsolePump.Configuration(
                kind: primary ? .primary : .channel,
                logging: primary,
                rate: configuration.rate,
                historyCapacity: configuration.historyCapacity
            ),
            now: now
        )
        let session = ConsoleSession(key: key, name: name, sinkSpec: sink, page: page, channel: channel, pump: pump)
        sessions[key] = session
        return session
    }

    /// Sink ready, event channel watched, then (and only then) CONNECTED.
    private func connect(_ session: ConsoleSession, ttyNode: String) async throws {
        let key = session.key
        let early = prepared.removeValue(forKey: key)
        switch session.sinkSpec {
        case .pty:
            if let early {
                // The pty published before the frontend connected, with the input it already took.
                session.pty = early.pty
                session.ptyChannel = early.ptyChannel
                session.pendingInput = early.pendingInput
            } else {
                let pty = try PseudoTerminal()
                session.pty = pty
                session.ptyChannel = try await attachStream(descriptor: pty.master.rawValue, key: key)
                try await store.write(ttyNode, pty.slavePath)
            }
        case .socket(let path):
            try await attachKeeper(session, path: path)
        }
        session.notifications = try await watchEvents(session.channel.waitDescriptor, key: key)
        guard sessions[key] === session else { return }  // torn down meanwhile
        // CONNECTED without a notification, as upstream xenconsoled does: a
        // flag-aware frontend reads the flag when it writes (and polls it while
        // it holds output back); whatever the guest already wrote is consumed
        // just below, and consuming notifies.
        if !configuration.legacyFlag {
            session.ring.connection = .connected
            session.pump.backendWroteFlag(.connected)
        }
        session.pump.updateSink(session.sinkReadiness)
        logger.info(
            "console connected",
            metadata: ["console": "\(key)", "name": "\(session.name)", "sink": "\(session.stats.path ?? "")"]
        )
        service(key)
    }

    /// A socket channel's data stream from the keeper. Bytes an earlier consoled
    /// handed over but did not live to consume are consumed now, unsent.
    private func attachKeeper(_ session: ConsoleSession, path: String) async throws {
        let keeper = try keeper()
        try keeper.open(key: session.key, path: path, name: session.name)
        let memory = session.ring.memory
        let outCons = memory.load32(at: ConsoleInterface.outConsOffset, ordering: .acquiring)
        let inProd = memory.load32(at: ConsoleInterface.inProdOffset, ordering: .acquiring)
        let (data, target) = try keeper.attach(key: session.key, outCons: outCons, inProd: inProd)
        defer { try? data.close() }
        let delivered = target &- outCons
        if delivered > 0, delivered <= UInt32(ConsoleInterface.outSize) {
            try session.ring.backend.input.consume(Int(delivered))
            logger.notice(
                "\(delivered) bytes were delivered before a restart; consumed without resending",
                metadata: ["console": "\(session.key)"]
            )
        } else if delivered != 0 {
            logger.warning(
                "the keeper and the ring disagree by \(delivered) bytes; resuming from the ring",
                metadata: ["console": "\(session.key)"]
            )
        }
        let channel = try await attachStream(descriptor: data.rawValue, key: session.key, isPty: false)
        if session.client == nil { session.client = channel }
    }

    private func keeper() throws -> KeeperClient {
        guard let keeper = keeperClient else {
            throw KeeperClient.Failure(description: "socket channels need the sink keeper, and none is running")
        }
        return keeper
    }

    // MARK: - Supervision of what consoled depends on

    /// Connects to the keeper (starting it if need be) and watches its process:
    /// if it dies, a new one is started and every socket channel published again.
    private func startKeeper() async throws {
        guard let launch = configuration.keeper else { return }
        let keeper = try launch()
        keeperClient = keeper
        keeperGeneration += 1
        guard let pid = keeper.keeperPID else { return }
        let pidfd = cconch_pidfd_open(pid)
        guard pidfd >= 0 else { return }
        // A pidfd turns readable when the process exits. NIO cannot hold one (reading
        // it fails with EINVAL, which NIO treats as a bug), so a small thread waits.
        let generation = keeperGeneration
        let thread = Thread { [self] in
            var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            while poll(&entry, 1, -1) < 0 && errno == EINTR {}
            close(pidfd)
            Task { await self.keeperDied(generation) }
        }
        thread.name = "keeper-watch"
        thread.start()
    }

    private var keeperGeneration = 0

    private func keeperDied(_ generation: Int) async {
        guard !stopping, generation == keeperGeneration else { return }
        keeperGeneration += 1
        logger.warning("the sink keeper died: restarting it; socket channels' clients must connect again")
        var delay: Duration = .milliseconds(50)
        while !stopping {
            do {
                try await startKeeper()
                break
            } catch {
                logger.error("cannot restart the sink keeper: \(error)")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
        // Publish every socket channel again and reconnect the ones being served.
        for (key, early) in prepared {
            if case .socket(let path) = early.spec,
                let name = await read(
                    ConsoleLayout.backend(of: key.domid, devid: key.devid, backend: configuration.backendDomid)
                        + "/name"
                )
            {
                try? keeper().open(key: key, path: path, name: name)
            }
        }
        for key in sessions.keys.sorted() {
            guard let session = sessions[key], case .socket(let path) = session.sinkSpec, !session.closed else {
                continue
            }
            session.client?.close(promise: nil)
            session.client = nil
            do {
                try await attachKeeper(session, path: path)
                session.pump.updateSink(session.sinkReadiness)
                service(key)
            } catch {
                logger.warning(
                    "cannot reattach a socket channel to the new keeper: \(error)",
                    metadata: ["console": "\(key)"]
                )
            }
        }
        logger.info("sink keeper restarted")
    }

    /// The simulated hypervisor can die and come back (with none of the old
    /// domains): reconnect, then drop every domain that is gone.
    private func monitorHypervisor() async throws {
        guard let recoverable = hypervisor as? any RecoverableHypervisor else { return }
        let monitor = try recoverable.makeLossMonitor()
        hypervisorWatch = try await watchEvents(
            monitor,
            ownership: .taken,
            onClose: { [self] in
                Task { await self.hypervisorLost(recoverable) }
            }
        )
    }

    private func hypervisorLost(_ recoverable: any RecoverableHypervisor) async {
        guard !stopping else { return }
        logger.warning("the hypervisor went away: reconnecting")
        var delay: Duration = .milliseconds(50)
        while !stopping {
            if (try? recoverable.reconnect()) != nil { break }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(1))
        }
        guard !stopping else { return }
        logger.info("reconnected to the hypervisor")
        try? await monitorHypervisor()
        rescanDomains()
    }

    /// Tears a console down: what is readable goes to its log, the flag becomes
    /// DISCONNECTED (unless `disconnect` is false: consoled restarts and a new one
    /// takes over), sinks close, the socket file goes, the port is closed.
    private func teardown(_ key: ConsoleKey, reason: String, disconnect: Bool = true) {
        guard let session = sessions.removeValue(forKey: key) else { return }
        if session.key.devid == 0, let log = session.log,
            let bytes = try? session.ring.backend.input.peek(maxCount: 4096),
            !bytes.isEmpty, log.append(bytes)
        {
            try? session.ring.backend.input.consume(bytes.count)
        }
        session.closed = true
        if disconnect && !configuration.legacyFlag {
            // No notify: guests poll the flag (as with CONNECTED, and as upstream).
            session.ring.connection = .disconnected
            session.pump.backendWroteFlag(.disconnected)
        }
        session.notifications?.close(promise: nil)
        session.ptyChannel?.close(promise: nil)
        session.client?.close(promise: nil)
        if case .socket = session.sinkSpec { keeperClient?.close(key: key) }
        try? hypervisor.close(session.channel.port)
        logger.info("console torn down: \(reason)", metadata: ["console": "\(key)"])
    }

    private func quarantine(_ session: ConsoleSession, _ reason: String) {
        session.pump.quarantine(reason: reason)
        logger.warning("console quarantined: \(reason)", metadata: ["console": "\(session.key)"])
        session.notifications?.close(promise: nil)
        session.notifications = nil
    }

    // MARK: - Moving bytes

    /// Runs after every notification and every change on the client side.
    func service(_ key: ConsoleKey) {
        guard let session = sessions[key], !session.closed, !session.pump.isQuarantined else { return }
        pushInput(session)
        announceMissedOutput(session)
        pumpOutput(session)
    }

    /// Console 0's client can take bytes again after its pty was full: tell it how
    /// many it missed, even if the guest has nothing new to say.
    private func announceMissedOutput(_ session: ConsoleSession) {
        guard session.key.devid == 0, let output = session.outputChannel, output.isWritable,
            let marker = session.pump.takeClientMissedMarker()
        else { return }
        output.writeAndFlush(output.allocator.buffer(bytes: marker), promise: nil)
    }

    private func pumpOutput(_ session: ConsoleSession) {
        guard !session.pumping else {
            session.pumpAgain = true
            return
        }
        session.pumping = true
        defer { session.pumping = false }
        repeat {
            session.pumpAgain = false
            pumpOutputOnce(session)
        } while session.pumpAgain && !session.closed
    }

    private func pumpOutputOnce(_ session: ConsoleSession) {
        while !session.writeInFlight {
            let snapshot = session.snapshot
            switch session.pump.inspect(snapshot, now: now) {
            case .ok: break
            case .restoreFlag(let value):
                session.ring.connection = value
                session.pump.backendWroteFlag(value)
            case .quarantine(let reason):
                quarantine(session, reason)
                return
            }
            let readable = Int(snapshot.outProd &- snapshot.outCons)
            let plan = session.pump.planOutput(readable: readable, sink: session.sinkReadiness, now: now)
            guard plan.count > 0 else {
                if case .timer(let nanoseconds) = plan.wait { armRateTimer(session, nanoseconds) }
                return
            }
            guard let bytes = try? session.ring.backend.input.peek(maxCount: plan.count) else {
                quarantine(session, "invalid ring indices")
                return
            }
            if session.key.devid == 0 {
                // Console 0: the log is the delivery that matters; the client is best effort
                // (its history replays what it missed).
                if plan.writeToLog, let log = session.log, !log.append(bytes) {
                    session.pump.commitOutput([], plan: plan, now: now)
                    return
                }
                if plan.sendToClient, let output = session.outputChannel {
                    if let marker = session.pump.takeClientMissedMarker() {
                        output.write(output.allocator.buffer(bytes: marker), promise: nil)
                    }
                    output.writeAndFlush(output.allocator.buffer(bytes: bytes), promise: nil)
                }
                commit(session, bytes, plan)
                continue
            }
            // A channel: consume only once the client's socket or pty took the bytes.
            guard plan.sendToClient, let output = session.outputChannel else {
                session.pump.commitOutput([], plan: plan, now: now)
                return
            }
            session.writeInFlight = true
            let key = session.key
            let identity = ObjectIdentifier(session)
            output.writeAndFlush(output.allocator.buffer(bytes: bytes)).whenComplete { [self] result in
                self.assumeIsolated { daemon in daemon.written(key, identity, bytes, plan, result) }
            }
        }
    }

    private func written(
        _ key: ConsoleKey,
        _ identity: ObjectIdentifier,
        _ bytes: [UInt8],
        _ plan: OutputPlan,
        _ result: Result<Void, any Error>
    ) {
        guard let session = sessions[key], ObjectIdentifier(session) == identity else { return }
        session.writeInFlight = false
        switch result {
        case .success:
            commit(session, bytes, plan)
            pumpOutput(session)
        case .failure:
            session.pump.commitOutput([], plan: plan, now: now)  // still in the ring
        }
    }

    private func commit(_ session: ConsoleSession, _ bytes: [UInt8], _ plan: OutputPlan) {
        let count = session.pump.commitOutput(bytes, plan: plan, now: now)
        guard count > 0 else { return }
        do {
            try session.ring.backend.input.consume(count)
            try session.channel.notify()
        } catch {
            quarantine(session, "\(error)")
        }
    }

    private func armRateTimer(_ session: ConsoleSession, _ nanoseconds: UInt64) {
        guard !session.rateTimerArmed, nanoseconds != .max else { return }
        session.rateTimerArmed = true
        let key = session.key
        eventLoop.scheduleTask(in: .nanoseconds(Int64(min(nanoseconds, UInt64(Int64.max))))) { [self] in
            self.assumeIsolated { daemon in
                daemon.sessions[key]?.rateTimerArmed = false
                daemon.service(key)
            }
        }
    }

    /// Client bytes into the `in` ring, as space allows; the rest waits and the
    /// client stops being read until the guest makes room. Nothing is dropped.
    private func pushInput(_ session: ConsoleSession) {
        guard !session.pendingInput.isEmpty else { return }
        let free = try? session.ring.backend.output.freeSpace()
        let count = session.pump.planInput(freeSpace: free, clientAvailable: session.pendingInput.count)
        if count > 0, let written = try? session.ring.backend.output.write(session.pendingInput.prefix(count)) {
            session.pendingInput.removeFirst(written)
            session.pump.commitInput(count: written, now: now)
            try? session.channel.notify()
        }
        let input = session.sinkSpec == .pty ? session.ptyChannel : session.client
        if session.pendingInput.isEmpty {
            input?.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            input?.read()
        } else {
            input?.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
    }

    // MARK: - Events from NIO handlers (on the loop)

    func guestNotified(_ key: ConsoleKey) {
        guard let session = sessions[key] else { return }
        if case .quarantine(let reason) = session.pump.notification(now: now) {
            quarantine(session, reason)
            return
        }
        service(key)
    }

    func clientInput(_ key: ConsoleKey, _ bytes: [UInt8], from channel: any Channel) {
        if sessions[key] == nil, let early = prepared[key] {
            // Held until the ring is mapped; past the limit the client is no longer read.
            early.pendingInput += bytes
            if early.pendingInput.count >= PreparedSink.inputLimit {
                channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
            }
            return
        }
        guard let session = sessions[key] else { return }
        session.pendingInput += bytes
        pushInput(session)
    }

    func clientAttached(_ key: ConsoleKey, _ channel: any Channel) {
        guard let session = sessions[key], !session.closed else {
            channel.close(promise: nil)
            return
        }
        if session.client != nil {
            refuseBusy(channel, name: session.name)
            return
        }
        session.client = channel
        session.pump.updateSink(session.sinkReadiness)
        service(key)
    }

    private func refuseBusy(_ channel: any Channel, name: String) {
        let message = "conch: channel '\(name)' is busy: another client is attached\r\n"
        channel.writeAndFlush(channel.allocator.buffer(string: message)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func clientDetached(_ key: ConsoleKey, _ channel: any Channel) {
        guard let session = sessions[key], session.client === channel else { return }
        session.client = nil
        session.pendingInput.removeAll()
        session.pump.updateSink(session.sinkReadiness)
    }

    // MARK: - NIO plumbing

    private func watchEvents(_ descriptor: Int32, key: ConsoleKey) async throws -> any Channel {
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
    private func watchEvents(
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
    private func attachStream(descriptor: Int32, key: ConsoleKey, isPty: Bool = true) async throws -> any Channel {
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

    private func startServer(
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
private final class DescriptorHandler: ChannelInboundHandler {
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
private final class ClientHandler: ChannelInboundHandler {
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

/// `conch stats`: one JSON snapshot per connection.
private final class StatsHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let daemon: ConsoleDaemon
    init(daemon: ConsoleDaemon) { self.daemon = daemon }
    func channelActive(context: ChannelHandlerContext) {
        let stats = daemon.assumeIsolated { $0.statistics() }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = (try? encoder.encode(stats)) ?? Data("{}".utf8)
        let channel = context.channel
        channel.writeAndFlush(channel.allocator.buffer(bytes: json)).whenComplete { _ in channel.close(promise: nil) }
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// The control socket: one request line, one answer, then the connection closes.
/// `history <domid>` answers with console 0's history (see
/// ``ConsoleDaemon/historyForAttach(_:)``), `release <domid>` stops serving the
/// domain (``ConsoleDaemon/stopServing(_:)``); anything else with an error line.
private final class ControlHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let daemon: ConsoleDaemon
    private var line: [UInt8] = []
    init(daemon: ConsoleDaemon) { self.daemon = daemon }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        line += buffer.readBytes(length: buffer.readableBytes) ?? []
        guard let end = line.firstIndex(of: UInt8(ascii: "\n")) else {
            if line.count > 256 { answer(context, Array("error: request too long\n".utf8)) }
            return
        }
        let words = String(decoding: line[..<end], as: UTF8.self).split(separator: " ")
        if words.count == 2, words[0] == "release", let domid = UInt16(words[1]) {
            let channel = context.channel
            let daemon = self.daemon
            line.removeAll()
            Task {
                let answer =
                    if let served = await daemon.stopServing(DomID(domid)) {
                        "released domain \(domid): \(served) console(s) marked DISCONNECTED\n"
                    } else {
                        "error: domain \(domid) is not served\n"
                    }
                try? await channel.writeAndFlush(channel.allocator.buffer(bytes: Array(answer.utf8)))
                try? await channel.close()
            }
        } else if words.count == 2, words[0] == "history", let domid = UInt16(words[1]) {
            let channel = context.channel
            let daemon = self.daemon
            line.removeAll()
            Task {
                let history = await daemon.historyForAttach(DomID(domid))
                let bytes = history ?? Array("error: console 0 of domain \(domid) is not served\n".utf8)
                try? await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
                try? await channel.close()
            }
        } else {
            answer(context, Array("error: unknown request (expected: history DOMID or release DOMID)\n".utf8))
        }
    }

    private func answer(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        let channel = context.channel
        line.removeAll()
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).whenComplete { _ in channel.close(promise: nil) }
    }
}
