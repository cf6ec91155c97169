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
    // MARK: - Discovery

    func rescanDomains() {
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
    func trackIntroduced() async {
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
    func track(_ domid: DomID) {
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

    func watchedPaths(_ domid: DomID) -> [(path: String, token: String, devices: Bool)] {
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
    func release(_ domid: DomID, reason: String = "domain released") {
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

    func read(_ path: String) async -> String? { try? await store.readString(path) }

    func primaryChanged(_ domid: DomID) async {
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
                    replaceEscape: configuration.replaceEscape,
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
    func devicesChanged(_ domid: DomID) async {
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
            let state = await read(device.frontend + "/state").flatMap { XenbusState(nodeValue: $0) }
            let step = ConsoleBackendHandshake.step(frontend: state, progress: progress(of: device.key))
            await perform(step, on: device, reason: "frontend \(state.map { "\($0)" } ?? "gone")")
        }
        let removed = Set(sessions.keys).union(prepared.keys).filter {
            $0.domid == domid && $0.devid > 0 && !devids.contains($0.devid)
        }
        for key in removed.sorted() {
            switch ConsoleBackendHandshake.stepForRemovedDevice(progress: progress(of: key)) {
            case .close: teardown(key, reason: "device removed")
            case .discardSink: discardPrepared(key)
            default: break
            }
        }
    }

    /// How far consoled has come with a secondary console.
    func progress(of key: ConsoleKey) -> ConsoleBackendHandshake.Progress {
        if sessions[key] != nil { return .connected }
        return prepared[key] != nil ? .sinkPublished : .idle
    }

    /// Performs one handshake step, then writes the backend state it leads to.
    func perform(_ step: ConsoleBackendHandshake.Step, on device: DeviceLocation, reason: String) async {
        let done: Bool
        switch step {
        case .wait: return
        case .publishSink: done = await prepareSecondary(device)
        case .connect: done = await connectSecondary(device)
        case .close:
            teardown(device.key, reason: reason)
            done = true
        case .discardSink:
            discardPrepared(device.key)
            done = true
        }
        guard done else { return }
        let current = await read(device.backend + "/state").flatMap { XenbusState(nodeValue: $0) }
        guard let next = ConsoleBackendHandshake.backendState(after: step, current: current) else { return }
        try? await store.write(device.backend + "/state", "\(next.rawValue)")
    }

    /// The toolstack's backend directory names this very frontend (`frontend-id`
    /// and `frontend`); anything else is a misconfiguration we do not serve.
    func belongs(_ device: DeviceLocation) async -> Bool {
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
    func sinkOf(_ device: DeviceLocation) async -> (name: String, sink: SinkSpec)? {
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
    func prepareSecondary(_ device: DeviceLocation) async -> Bool {
        let key = device.key
        guard let (name, sink) = await sinkOf(device) else { return false }
        guard sessions[key] == nil, prepared[key] == nil else { return false }
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
            guard prepared[key] === early else { return false }  // connected or discarded meanwhile
            logger.debug("channel sink published", metadata: ["console": "\(key)"])
            return true
        } catch {
            logger.warning("cannot publish channel sink: \(error)", metadata: ["console": "\(key)"])
            discardPrepared(key)
            return false
        }
    }

    func discardPrepared(_ key: ConsoleKey) {
        guard let early = prepared.removeValue(forKey: key) else { return }
        early.ptyChannel?.close(promise: nil)
        if case .socket = early.spec { keeperClient?.close(key: key) }
    }

    func connectSecondary(_ device: DeviceLocation) async -> Bool {
        let key = device.key
        guard let ringRef = await read(device.frontend + "/ring-ref").flatMap({ UInt32($0) }),
            let port = await read(device.frontend + "/port").flatMap({ UInt32($0) }),
            let (name, described) = await sinkOf(device)
        else { return false }
        guard sessions[key] == nil else { return false }
        let sink = prepared[key]?.spec ?? described
        do {
            let page = try hypervisor.mapGrant(key.domid, ref: GrantRef(ringRef), readOnly: false)
            let channel = try hypervisor.bindInterdomain(remote: key.domid, remotePort: EvtchnPort(port))
            let session = makeSession(key: key, name: name, sink: sink, page: page, channel: channel, primary: false)
            try await connect(session, ttyNode: device.frontend + "/tty")
            return true
        } catch {
            logger.warning("cannot connect console: \(error)", metadata: ["console": "\(key)"])
            teardown(key, reason: "connect failed")
            return false
        }
    }

    func makeSession(
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
    func connect(_ session: ConsoleSession, ttyNode: String) async throws {
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
    func attachKeeper(_ session: ConsoleSession, path: String) async throws {
        let keeper = try keeper()
        try keeper.open(key: session.key, path: path, name: session.name)
        let outCons = session.ring.backend.input.rawIndices.consumer
        let inProd = session.ring.backend.output.rawIndices.producer
        let (data, target) = try keeper.attach(key: session.key, outCons: outCons, inProd: inProd)
        defer { try? data.close() }
        switch KeeperLedger.alreadyDelivered(outCons: outCons, delivered: target) {
        case 0?:
            break
        case let delivered?:
            try session.ring.backend.input.consume(delivered)
            logger.notice(
                "\(delivered) bytes were delivered before a restart; consumed without resending",
                metadata: ["console": "\(session.key)"]
            )
        case nil:
            logger.warning(
                "the keeper and the ring disagree by \(target &- outCons) bytes; resuming from the ring",
                metadata: ["console": "\(session.key)"]
            )
        }
        let channel = try await attachStream(descriptor: data.rawValue, key: session.key, isPty: false)
        if session.client == nil { session.client = channel }
    }

    func keeper() throws -> KeeperClient {
        guard let keeper = keeperClient else {
            throw KeeperClient.Failure(description: "socket channels need the sink keeper, and none is running")
        }
        return keeper
    }
}
