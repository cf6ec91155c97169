//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOPosix
import XenABI
import XenHypervisor
import XenRing
import XenstoreCore
import XenstoreWire

#if canImport(Glibc)
import Glibc
#endif

/// The per-guest transport: each introduced domain's xenstore page (grant 1,
/// else its frame) carries requests in `req` and replies and watch events in
/// `rsp` (§4.10 of the reference), with one event channel for notifications.
public final class RingDomains: XenstoreDomainRings, @unchecked Sendable {
    private let hypervisor: any PrivilegedHypervisor
    private let group: any EventLoopGroup
    private let logger: Logger
    private var rings: [DomID: RingConnection] = [:]
    /// dom0's own kernel's ring, when this daemon is the xenstored of a real dom0.
    private var localRing: RingConnection?
    /// Domains whose shutdown was already reported (`@releaseDomain` fires once).
    private var reportedShutdown: Set<DomID> = []
    private var virqChannel: (any Channel)?
    private var virq: (any EventChannelEndpoint)?
    private var lossChannel: (any Channel)?
    private var stopped = false

    public init(hypervisor: any PrivilegedHypervisor, group: any EventLoopGroup, logger: Logger) {
        self.hypervisor = hypervisor
        self.group = group
        self.logger = logger
    }

    /// Binds `VIRQ_DOM_EXC` so that shutdowns and deaths reach the engine, and
    /// watches the hypervisor connection if it can be lost.
    public func start(hub: XenstoreHub) async throws {
        try await bindVirq(hub: hub)
        try await monitorHypervisor(hub: hub)
    }

    private func bindVirq(hub: XenstoreHub) async throws {
        let virq = try hypervisor.bindVirq(.domainException)
        self.virq = virq
        virqChannel = try await watchDescriptor(virq.waitDescriptor, on: hub.eventLoop) { [weak self, weak hub] in
            guard let self, let hub else { return }
            self.domainsChanged(hub: hub)
        }
    }

    /// The simulated hypervisor can die and come back (its guests die with it):
    /// then reconnect, bind the VIRQ again and release every domain that is gone.
    private func monitorHypervisor(hub: XenstoreHub) async throws {
        guard let recoverable = hypervisor as? any RecoverableHypervisor else { return }
        let monitor = try recoverable.makeLossMonitor()
        defer { close(monitor) }
        lossChannel = try await watchDescriptor(
            monitor,
            on: hub.eventLoop,
            onClose: { [weak self, weak hub] in
                guard let self, let hub, !self.stopped else { return }
                self.logger.warning("the hypervisor went away: reconnecting")
                self.virqChannel?.close(promise: nil)
                self.virqChannel = nil
                self.recover(from: recoverable, hub: hub, attempt: 0)
            },
            {}
        )
    }

    private func recover(from recoverable: any RecoverableHypervisor, hub: XenstoreHub, attempt: Int) {
        guard !stopped else { return }
        do {
            try recoverable.reconnect()
        } catch {
            hub.eventLoop.scheduleTask(in: .milliseconds(Int64(min(1000, 50 << min(attempt, 5))))) { [weak self] in
                self?.recover(from: recoverable, hub: hub, attempt: attempt + 1)
            }
            return
        }
        logger.info("reconnected to the hypervisor")
        let loop = hub.eventLoop
        Task { [self] in
            do {
                try await bindVirq(hub: hub)
                try await monitorHypervisor(hub: hub)
                try await loop.submit { self.domainsChanged(hub: hub) }.get()
            } catch {
                logger.error("cannot bind to the restarted hypervisor: \(error)")
            }
        }
    }

    public func stop() {
        stopped = true
        lossChannel?.close(promise: nil)
        virqChannel?.close(promise: nil)
        for ring in rings.values { ring.shutdown() }
        rings.removeAll()
        localRing?.shutdown()
        localRing = nil
    }

    /// Serves dom0's own kernel (a xenstored in a real dom0): the ring its kernel
    /// set up (`/proc/xen/xsd_kva`) and its unbound port, bound here. The kernel's
    /// connection is privileged and, like a guest's, outlives this daemon; the
    /// kernel waits for a first event before it probes xenbus, so one is sent.
    public func serveLocal(page: GuestPage, port: EvtchnPort, hub: XenstoreHub) throws {
        let channel = try hypervisor.bindInterdomain(remote: .dom0, remotePort: port)
        let ring = RingConnection(
            domid: .dom0,
            page: page,
            channel: channel,
            hub: hub,
            logger: logger,
            privileged: true
        )
        localRing?.shutdown()
        localRing = ring
        ring.start(group: group, resuming: hub.recoveredLocalConnection)
        try channel.notify()
    }

    public var introducedDomains: [DomID] { Array(rings.keys) }

    // MARK: XenstoreDomainRings

    public func introduce(_ domid: DomID, frame: UInt64, port: UInt32, hub: XenstoreHub) {
        connect(domid, frame: frame, port: port, hub: hub, resuming: nil)
    }

    /// After a restart: serves again every ring the journal brought back, where it
    /// stands (indices untouched: the guest may be half-way through a request),
    /// then drops the domains that died meanwhile.
    public func recover(hub: XenstoreHub) {
        for domain in hub.recoveredDomains {
            connect(domain.domid, frame: domain.frame, port: domain.port, hub: hub, resuming: domain.connection)
        }
        domainsChanged(hub: hub)
    }

    private func connect(_ domid: DomID, frame: UInt64, port: UInt32, hub: XenstoreHub, resuming: ConnectionID?) {
        do {
            // Grant 1 first, as cxenstored 4.17 does; the frame number as a fallback.
            let page: GuestPage
            do {
                page = try hypervisor.mapGrant(domid, ref: .xenstore, readOnly: false)
            } catch {
                page = try hypervisor.mapForeign(domid, frame: PageFrame(frame), readOnly: false)
            }
            let channel = try hypervisor.bindInterdomain(remote: domid, remotePort: EvtchnPort(port))
            let ring = RingConnection(domid: domid, page: page, channel: channel, hub: hub, logger: logger)
            rings[domid]?.shutdown()
            rings[domid] = ring
            reportedShutdown.remove(domid)
            ring.start(group: group, resuming: resuming)
        } catch {
            logger.error("cannot connect the xenstore ring of a domain: \(error)", metadata: ["domid": "\(domid)"])
            if resuming != nil { hub.domainDestroyed(domid) }
        }
    }

    public func rebind(_ domid: DomID, port: UInt32, hub: XenstoreHub) {
        guard let ring = rings[domid] else { return }
        do {
            let channel = try hypervisor.bindInterdomain(remote: domid, remotePort: EvtchnPort(port))
            ring.rebind(channel: channel, group: group)
        } catch {
            logger.error("cannot rebind the xenstore ring: \(error)", metadata: ["domid": "\(domid)"])
        }
    }

    public func release(_ domid: DomID, hub: XenstoreHub) {
        reportedShutdown.remove(domid)
        guard let ring = rings.removeValue(forKey: domid) else { return }
        ring.shutdown()
        try? hypervisor.close(ring.port)
    }

    /// VIRQ_DOM_EXC fired: compare the hypervisor's domains with ours.
    private func domainsChanged(hub: XenstoreHub) {
        guard let domains = try? hypervisor.listDomains() else { return }
        let live = Dictionary(uniqueKeysWithValues: domains.map { ($0.domid, $0) })
        for domid in rings.keys.sorted() {
            guard let info = live[domid], info.state != .dying else {
                logger.info("domain gone", metadata: ["domid": "\(domid)"])
                hub.domainDestroyed(domid)
                continue
            }
            if info.state == .shutdown, reportedShutdown.insert(domid).inserted {
                hub.domainShutdown(domid)
            }
        }
    }
}

/// One guest's xenstore ring, served on the hub's event loop.
final class RingConnection: XenstoreEndpoint {
    let domid: DomID
    private let page: GuestPage
    private var channel: any EventChannelEndpoint
    private let ring: XenstoreRing<GuestPage>
    private weak var hub: XenstoreHub?
    private let logger: Logger
    /// dom0's own kernel's ring is privileged; guests' are not.
    private let privileged: Bool
    private var id: ConnectionID?
    private var notifications: (any Channel)?
    /// Encoded messages not yet in `rsp` (bounded by the hub's queue limit).
    private var pending: [UInt8] = []
    private var pendingStart = 0
    private var reading = true
    private var failed = false
    private var receiver = XenstoreRingReceiver()

    /// Replies beyond this many bytes wait in the hub's queue instead.
    static let pendingLimit = 64 * 1024

    init(
        domid: DomID,
        page: GuestPage,
        channel: any EventChannelEndpoint,
        hub: XenstoreHub,
        logger: Logger,
        privileged: Bool = false
    ) {
        self.domid = domid
        self.privileged = privileged
        self.page = page
        self.channel = channel
        self.ring = XenstoreRing(memory: page)
        self.hub = hub
        self.logger = logger
    }

    var port: EvtchnPort { channel.port }

    /// Starts serving; `resuming` is the connection a restarted daemon recovered
    /// from its journal for this ring (its watches and transactions come back).
    func start(group: any EventLoopGroup, resuming: ConnectionID? = nil) {
        guard let hub else { return }
        // Conch serves reconnection and the error field (xenstore-ring.txt).
        XenstoreRing(memory: page).serverFeatures = [.reconnection, .error]
        if let resuming {
            receiver = XenstoreRingReceiver(pending: hub.reattach(self, id: resuming, domid: domid))
            id = resuming
        } else {
            id = hub.attach(self, domid: domid, privileged: privileged, persistent: true)
        }
        listen(on: hub.eventLoop)
        service()  // requests the guest wrote before it was introduced (or while we were away)
    }

    private func listen(on loop: any EventLoop) {
        let future = watchDescriptor(channel.waitDescriptor, on: loop) { [weak self] in self?.service() }
        future.whenSuccess { [weak self] in self?.notifications = $0 }
    }

    /// INTRODUCE of an introduced domain: new port, indices reset, RECONNECT answered.
    func rebind(channel: any EventChannelEndpoint, group: any EventLoopGroup) {
        notifications?.close(promise: nil)
        self.channel = channel
        resetRing()
        if let loop = hub?.eventLoop { listen(on: loop) }
        try? channel.notify()
    }

    func shutdown() {
        notifications?.close(promise: nil)
        notifications = nil
        failed = true
        if let id, let hub { hub.detach(id) }
        id = nil
    }

    // MARK: XenstoreEndpoint

    var isWritable: Bool { !failed && pending.count - pendingStart < Self.pendingLimit }

    func write(_ message: XenstoreMessage) {
        guard !failed else { return }
        message.encode(into: &pending)
    }

    func flush() { pushPending() }

    func setReading(_ enabled: Bool) {
        reading = enabled
        if enabled { service() }
    }

    /// The hub gives up on this peer (an oversize header): mark the page and stop.
    func close() { fail(.proto, "protocol violation") }

    // MARK: Servicing

    /// Runs on every notification: reconnect requests, replies waiting for
    /// space, and new requests.
    func service() {
        guard !failed, let hub, let id else { return }
        _ = try? channel.consumePending()
        if XenstoreRing(memory: page).connection == .reconnect {
            reconnect(hub: hub)
            return
        }
        pushPending()
        guard reading else { return }
        do {
            // Everything in the ring is taken at once (Linux notifies only when it
            // finds the ring empty); each step is recorded by the hub before it is
            // consumed, so a daemon killed at any moment resumes exactly.
            let input = ring.backend.input
            while !failed, reading {
                let step = try receiver.peek(from: input)
                switch step {
                case .none:
                    return
                case .message(let bytes, _):
                    hub.received(bytes, from: id)
                case .partial(let prefix, _):
                    hub.receivedPrefix(prefix, from: id)
                case .oversize(let header):
                    hub.received(header, from: id)  // the hub reports the oversize header and closes us
                    return
                }
                guard !failed else { return }
                try receiver.take(step, from: input)
                try? channel.notify()  // a writer waiting for space may go on
            }
        } catch {
            fail(.ringIndex, "\(error)")
        }
    }

    private func pushPending() {
        guard !failed, pendingStart < pending.count else { return }
        do {
            let written = try pending.withUnsafeBytes { buffer in
                try ring.backend.output.write(UnsafeRawBufferPointer(rebasing: buffer[pendingStart...]))
            }
            pendingStart += written
            if pendingStart == pending.count {
                pending.removeAll(keepingCapacity: true)
                pendingStart = 0
            }
            if written > 0 {
                try? channel.notify()
                if let id { hub?.writable(id) }
            }
        } catch {
            fail(.ringIndex, "\(error)")
        }
    }

    /// The guest set RECONNECT: drop partial packets, both queues, watches and
    /// transactions, then answer CONNECTED.
    private func reconnect(hub: XenstoreHub) {
        logger.info("xenstore ring reconnect", metadata: ["domid": "\(domid)"])
        if let id { hub.detach(id) }
        pending.removeAll()
        pendingStart = 0
        resetRing()
        id = hub.attach(self, domid: domid, privileged: privileged, persistent: true)
        try? channel.notify()
    }

    private func resetRing() {
        receiver.reset()
        let ring = XenstoreRing(memory: page)
        ring.resetIndices()
        ring.error = .none
        ring.connection = .connected
    }

    /// Stops serving this ring (only this one) and tells the guest why.
    private func fail(_ error: XenstoreRingError, _ why: String) {
        guard !failed else { return }
        failed = true
        XenstoreRing(memory: page).error = error
        logger.notice("xenstore ring abandoned: \(why)", metadata: ["domid": "\(domid)", "error": "\(error.rawValue)"])
        try? channel.notify()
        if let id, let hub { hub.detach(id) }
        id = nil
    }
}

/// Calls `onSignal` on `loop` whenever `descriptor` (an eventfd) becomes readable,
/// and `onClose` when it reaches end of stream (a socket whose peer went away).
/// The channel owns a duplicate of the descriptor.
@discardableResult
func watchDescriptor(
    _ descriptor: Int32,
    on loop: any EventLoop,
    onClose: (() -> Void)? = nil,
    _ onSignal: @escaping () -> Void
)
    -> EventLoopFuture<any Channel>
{
    let copy = dup(descriptor)
    // The callbacks touch state confined to `loop`; the channel runs on `loop`.
    let callback = LoopConfined((onSignal, onClose))
    return NIOPipeBootstrap(group: loop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    EventfdHandler(callback.value.0, onClose: callback.value.1)
                )
            }
        }
        .takingOwnershipOfDescriptor(input: copy)
}

/// A value handed to a closure that runs on the event loop that owns it.
private struct LoopConfined<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

private final class EventfdHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let onSignal: () -> Void
    let onClose: (() -> Void)?
    init(_ onSignal: @escaping () -> Void, onClose: (() -> Void)?) {
        self.onSignal = onSignal
        self.onClose = onClose
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { onSignal() }
    func channelInactive(context: ChannelHandlerContext) { onClose?() }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {}
}

extension RingDomains {
    fileprivate func watchDescriptor(
        _ descriptor: Int32,
        on loop: any EventLoop,
        onClose: (() -> Void)? = nil,
        _ onSignal: @escaping () -> Void
    )
        async throws -> any Channel
    {
        try await XenstoreServer.watchDescriptor(descriptor, on: loop, onClose: onClose, onSignal).get()
    }
}
