//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import XenABI
import XenstoreCore
import XenstoreWire

/// One peer of xenstored as a transport sees it: a Unix-socket client today, a
/// guest's shared ring tomorrow. The hub calls these on its event loop only.
public protocol XenstoreEndpoint: AnyObject {
    /// Whether the transport can take another message without growing its own buffer
    /// past its bound. The hub keeps the rest in the connection's ``OutboundQueue``,
    /// where identical unsent watch events coalesce.
    var isWritable: Bool { get }
    /// Queues one message for the peer (the transport encodes it where it keeps it).
    func write(_ message: XenstoreMessage)
    /// Pushes queued messages to the peer.
    func flush()
    /// Stops (or resumes) reading requests: backpressure on a client that does not
    /// read its replies.
    func setReading(_ enabled: Bool)
    /// Drops the connection. The transport then calls ``XenstoreHub/detach(_:)``.
    func close()
}

/// What to do with a domain's shared ring when the engine introduces or releases it.
/// The hypervisor-backed ring transport implements this; a socket-only daemon has none.
public protocol XenstoreDomainRings: AnyObject {
    func introduce(_ domid: DomID, frame: UInt64, port: UInt32, hub: XenstoreHub)
    func rebind(_ domid: DomID, port: UInt32, hub: XenstoreHub)
    func release(_ domid: DomID, hub: XenstoreHub)
}

/// The xenstored core loop: owns the pure ``XenstoreEngine`` and every connection's
/// decoder and outbound queue, and carries out the engine's effects.
///
/// Confinement: every method runs on ``eventLoop`` (checked), so the engine needs no
/// lock. Transports hop to it before calling in. That is why the type is
/// `@unchecked Sendable`: it may be *referenced* from any thread, used from one.
public final class XenstoreHub: @unchecked Sendable {
    public let eventLoop: any EventLoop
    public let logger: Logger
    public weak var domainRings: (any XenstoreDomainRings)?
    /// Replies queued for a connection beyond which it is no longer read.
    public let maxQueuedMessages: Int

    // SAFETY: these and `Connection`'s mutable fields are not checked for exclusivity at
    // run time. Every access runs on `eventLoop` (one thread), each is a single call into
    // pure code (the engine, a decoder, a queue) that cannot call back into the hub while
    // the access is open, and the checks cost more than a request's dictionary work.
    @exclusivity(unchecked) private var engine: XenstoreEngine
    @exclusivity(unchecked) private var connections: [ConnectionID: Connection] = [:]
    private var nextID: UInt64 = 1
    /// Every input to the engine goes here first, so a restarted daemon can rebuild it.
    private let journal: JournalFile?
    /// The start of a message each ring connection has taken but not finished
    /// (recorded, so that a restarted daemon resumes mid-message).
    private var ringPrefixes: [ConnectionID: [UInt8]] = [:]
    /// Requests and their latency for Prometheus (`--metrics`); nil: not recorded.
    var metrics: XenstoredMetrics?

    private final class Connection {
        let endpoint: any XenstoreEndpoint
        let domid: DomID
        // SAFETY: unchecked for exclusivity, as the hub's own fields above.
        @exclusivity(unchecked) var decoder = XenstoreDecoder()
        @exclusivity(unchecked) var outbound = OutboundQueue()
        @exclusivity(unchecked) var readingPaused = false
        /// False once ``XenstoreHub/detach(_:)`` forgot it.
        @exclusivity(unchecked) var attached = true

        init(endpoint: any XenstoreEndpoint, domid: DomID) {
            self.endpoint = endpoint
            self.domid = domid
        }
    }

    /// - Parameters:
    ///   - journal: where inputs are recorded, with what it held when it was opened:
    ///     the engine starts from their replay, and guest rings from before the
    ///     restart are to be served again (``persistentConnections``).
    public init(
        eventLoop: any EventLoop,
        quotas: Quotas = .cxenstored417,
        maxQueuedMessages: Int = 256,
        journal: (file: JournalFile, entries: [JournalEntry])? = nil,
        logger: Logger
    ) {
        self.eventLoop = eventLoop
        self.maxQueuedMessages = maxQueuedMessages
        self.logger = logger
        self.journal = journal?.file
        guard let journal, !journal.entries.isEmpty else {
            self.engine = XenstoreEngine(quotas: quotas)
            return
        }
        var engine = XenstoreEngine.replay(journal.entries, quotas: quotas)
        // Socket clients died with the old daemon; guests' rings did not.
        for id in engine.connectionIDs where !engine.persistentConnections.contains(where: { $0.id == id }) {
            engine.disconnect(id)
        }
        self.engine = engine
        ringPrefixes = JournalEntry.ringPrefixes(in: journal.entries).filter { engine.connectionIDs.contains($0.key) }
        nextID = (engine.highestConnectionID?.rawValue ?? 0) + 1
        logger.info(
            "store recovered from the journal",
            metadata: [
                "entries": "\(journal.entries.count)", "domains": "\(engine.introducedDomains.count)",
                "rings": "\(engine.persistentConnections.count)",
            ]
        )
        compact()
    }

    /// Domains introduced before a restart, and the ring connections to serve again.
    public var recoveredDomains: [(domid: DomID, frame: UInt64, port: UInt32, connection: ConnectionID?)] {
        let rings = engine.persistentConnections
        return engine.introducedDomains.map { domain in
            (domain.domid, domain.frame, domain.port, rings.first { $0.domid == domain.domid }?.id)
        }
    }

    /// dom0's own kernel ring connection from before a restart (a xenstored in a
    /// real dom0): the persistent connection of dom0, which is never introduced.
    public var recoveredLocalConnection: ConnectionID? {
        engine.persistentConnections.first { $0.domid == .dom0 }?.id
    }

    private func record(_ entry: JournalEntry) {
        journal?.append(entry)
        if let failure = journal?.failed, !journalFailureReported {
            journalFailureReported = true
            logger.error("the store is no longer recorded: \(failure)")
        }
    }

    private var journalFailureReported = false

    /// Replaces a grown journal by a snapshot of the engine.
    private func compact() {
        guard let journal else { return }
        engine.loseOpenTransactions()
        do {
            try journal.replace(
                with: engine.snapshot() + ringPrefixes.sorted { $0.key < $1.key }.map { .ringPrefix($0.key, $0.value) }
            )
        } catch {
            logger.error("cannot write a snapshot of the store: \(error)")
        }
    }

    /// Registers a new peer; socket clients are privileged dom0. A guest's ring is
    /// `persistent`: it outlives this daemon, and a restarted one serves it again.
    public func attach(
        _ endpoint: any XenstoreEndpoint,
        domid: DomID = .dom0,
        privileged: Bool = true,
        persistent: Bool = false
    ) -> ConnectionID {
        eventLoop.preconditionInEventLoop()
        let id = ConnectionID(nextID)
        nextID += 1
        connections[id] = Connection(endpoint: endpoint, domid: domid)
        record(.connect(id, domid: domid, privileged: privileged, persistent: persistent))
        engine.connect(id, domid: domid, privileged: privileged, persistent: persistent)
        logger.debug("connection attached", metadata: ["connection": "\(id)", "domid": "\(domid)"])
        return id
    }

    /// Serves again a ring connection the journal brought back (its watches and
    /// transactions are already in the engine); returns the start of the message
    /// it had taken from its ring but not finished.
    public func reattach(_ endpoint: any XenstoreEndpoint, id: ConnectionID, domid: DomID) -> [UInt8] {
        eventLoop.preconditionInEventLoop()
        connections[id]?.attached = false
        connections[id] = Connection(endpoint: endpoint, domid: domid)
        return ringPrefixes[id] ?? []
    }

    /// Forgets a peer: its watches and transactions go with it.
    public func detach(_ id: ConnectionID) {
        eventLoop.preconditionInEventLoop()
        guard let connection = connections.removeValue(forKey: id) else { return }
        connection.attached = false
        ringPrefixes[id] = nil
        record(.disconnect(id))
        engine.disconnect(id)
        logger.debug("connection detached", metadata: ["connection": "\(id)"])
    }

    /// A ring connection took the start of a message out of its ring: record it
    /// before the guest sees it consumed (a restarted daemon resumes from it).
    public func receivedPrefix(_ prefix: [UInt8], from id: ConnectionID) {
        eventLoop.preconditionInEventLoop()
        guard connections[id] != nil else { return }
        record(.ringPrefix(id, prefix))
        ringPrefixes[id] = prefix
    }

    /// Bytes arrived from a peer, split anywhere (a ring connection: whole messages,
    /// recorded here before it consumes them).
    public func received(_ bytes: some Sequence<UInt8>, from id: ConnectionID) {
        eventLoop.preconditionInEventLoop()
        guard let connection = connections[id] else { return }
        connection.decoder.append(bytes)
        // A recorded prefix ends with its message: record that message even if it
        // changes nothing, so that a replay does not resume it.
        var endsPrefix = !ringPrefixes.isEmpty && ringPrefixes.removeValue(forKey: id) != nil
        while case .message(let message) = connection.decoder.next() {
            if JournalEntry.matters(message) || endsPrefix { record(.request(id, message)) }
            endsPrefix = false
            guard let metrics else {
                apply(engine.handle(message, from: id), requester: (id, connection))
                continue
            }
            let start = ContinuousClock.now
            let effects = engine.handle(message, from: id)
            let took = ContinuousClock.now - start
            metrics.record(
                message.type,
                nanoseconds: took.components.seconds * 1_000_000_000 + took.components.attoseconds / 1_000_000_000,
                effects: effects
            )
            apply(effects, requester: (id, connection))
        }
        if journal?.wantsCompaction == true { compact() }
        if case .failed(let error) = connection.decoder.state {
            // cxenstored drops a connection that announces an oversize payload.
            logger.notice(
                "dropping connection: \(error)",
                metadata: ["connection": "\(id)", "domid": "\(connection.domid)"]
            )
            connection.endpoint.close()
        }
    }

    /// The transport can take more: move queued messages to it.
    public func writable(_ id: ConnectionID) {
        eventLoop.preconditionInEventLoop()
        if let connection = connections[id] { drain(connection) }
    }

    /// The hypervisor reports a domain shut down or crashed.
    public func domainShutdown(_ domid: DomID) {
        eventLoop.preconditionInEventLoop()
        record(.domainShutdown(domid))
        apply(engine.domainShutdown(domid))
    }

    /// The hypervisor reports a domain destroyed.
    public func domainDestroyed(_ domid: DomID) {
        eventLoop.preconditionInEventLoop()
        record(.domainDestroyed(domid))
        apply(engine.domainDestroyed(domid))
    }

    /// Closes every connection (orderly shutdown).
    public func closeAll() {
        eventLoop.preconditionInEventLoop()
        for connection in connections.values { connection.endpoint.close() }
    }

    public var connectionCount: Int { connections.count }

    /// Carries out effects. `requester` is the connection whose request produced them,
    /// already looked up: most effects are its one reply.
    private func apply(_ effects: [XenstoreEffect], requester: (id: ConnectionID, connection: Connection)? = nil) {
        // The connections to drain: most effects are one reply, so the first is
        // kept apart and the array is made only for a second one.
        var first: Connection?
        var others: [Connection] = []
        for effect in effects {
            switch effect {
            case .send(let to, let message):
                guard let connection = to == requester?.id ? requester?.connection : connections[to] else { continue }
                if !connection.outbound.enqueue(message) {
                    logger.debug("watch event dropped: queue full", metadata: ["connection": "\(to)"])
                }
                if first == nil {
                    first = connection
                } else if connection !== first {
                    others.append(connection)
                }
            case .introduceDomain(let domid, let frame, let port):
                logger.info(
                    "domain introduced",
                    metadata: ["domid": "\(domid)", "frame": "\(frame)", "port": "\(port)"]
                )
                domainRings?.introduce(domid, frame: frame, port: port, hub: self)
            case .rebindDomain(let domid, let port):
                domainRings?.rebind(domid, port: port, hub: self)
            case .releaseDomain(let domid):
                logger.info("domain released", metadata: ["domid": "\(domid)"])
                domainRings?.release(domid, hub: self)
            case .log(let line):
                logger.info("\(line)")
            }
        }
        // A connection detached meanwhile (an effect released its domain) is not drained.
        if let first, first.attached { drain(first) }
        for connection in others where connection.attached { drain(connection) }
    }

    private func drain(_ connection: Connection) {
        var wrote = false
        while connection.endpoint.isWritable, let message = connection.outbound.dequeue() {
            connection.endpoint.write(message)
            wrote = true
        }
        if wrote { connection.endpoint.flush() }
        // A client that stops reading its replies stops being read (cxenstored's
        // "outstanding requests" limit), so its queue stays bounded.
        let overloaded = connection.outbound.count >= maxQueuedMessages
        if overloaded != connection.readingPaused {
            connection.readingPaused = overloaded
            connection.endpoint.setReading(!overloaded)
        }
    }
}
