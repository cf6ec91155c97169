//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenstoreWire

/// One input to the engine, as xenstored's journal records it.
///
/// The engine is a pure function of its inputs, so the store survives a restart
/// by replaying them: xenstored appends each entry to its journal *before* it
/// acts on it, and a restarted xenstored feeds the journal to a fresh engine. A
/// journal that grew too long is replaced by a snapshot (``XenstoreEngine/snapshot()``):
/// the few entries that rebuild the same state.
///
/// What survives: every node with its value and permissions, the domain table
/// (introduced domains, shutdown reports, targets, per-domain quotas and
/// features), special-path permissions, global quotas, and each guest ring's
/// connection with its watches. Transactions survive a replay of the journal;
/// a snapshot cannot hold them, so transactions open when one is taken end in
/// EAGAIN at commit (the client retries, as it must for any EAGAIN).
public enum JournalEntry: Sendable, Hashable {
    /// A connection registered; `persistent` for a guest's ring, which outlives a
    /// xenstored restart (socket clients reconnect instead).
    case connect(ConnectionID, domid: DomID, privileged: Bool, persistent: Bool)
    case disconnect(ConnectionID)
    case request(ConnectionID, XenstoreMessage)
    case domainShutdown(DomID)
    case domainDestroyed(DomID)
    /// (Snapshots.) The connection's transaction `id` exists but its work is lost:
    /// it commits with EAGAIN.
    case lostTransaction(ConnectionID, UInt32)
    /// (Snapshots.) The id the connection's next transaction gets.
    case nextTransaction(ConnectionID, UInt32)
    /// The start of a message a guest's ring connection has taken out of its ring
    /// but not yet whole (see `XenstoreRingReceiver`); empty when none is left.
    /// A `request` from the connection also ends it.
    case ringPrefix(ConnectionID, [UInt8])

    // MARK: Encoding

    /// `u32 length, u8 kind, body`, little-endian; `length` counts kind and body.
    public func encoded() -> [UInt8] {
        var record: [UInt8] = []
        encode(into: &record)
        return record
    }

    /// Replaces `record`'s contents by this entry's record, reusing its storage (the
    /// daemon encodes one per request into the same buffer).
    public func encode(into record: inout [UInt8]) {
        record.removeAll(keepingCapacity: true)
        if case .request(let id, let message) = self {
            // The daemon's one record per request, stored field by field into space made
            // once (the same bytes as `encodeBody`, which the tests compare).
            let size = 5 + 8 + message.encodedCount
            record.append(contentsOf: repeatElement(0, count: size))
            // SAFETY: the record's `size` bytes, used only inside the closure; every
            // store and the message end within them.
            record.withUnsafeMutableBytes { bytes in
                bytes.storeBytes(of: UInt32(truncatingIfNeeded: size - 4).littleEndian, as: UInt32.self)
                bytes[4] = Self.requestKind
                bytes.storeBytes(of: id.rawValue.littleEndian, toByteOffset: 5, as: UInt64.self)
                message.store(into: UnsafeMutableRawBufferPointer(rebasing: bytes[13...]))
            }
            return
        }
        // The length is patched in once the body is known.
        record += [0, 0, 0, 0, 0]
        Self.encodeBody(of: self, into: &record)
    }

    private static let requestKind: UInt8 = 3

    /// The general encoder (every kind); `encode(into:)` writes requests itself.
    static func encodedByBody(_ entry: JournalEntry) -> [UInt8] {
        var record: [UInt8] = [0, 0, 0, 0, 0]
        encodeBody(of: entry, into: &record)
        return record
    }

    private static func encodeBody(of entry: JournalEntry, into body: inout [UInt8]) {
        let kind: UInt8
        switch entry {
        case .connect(let id, let domid, let privileged, let persistent):
            kind = 1
            Self.append(id.rawValue, to: &body)
            Self.append(domid.rawValue, to: &body)
            body.append((privileged ? 1 : 0) | (persistent ? 2 : 0))
        case .disconnect(let id):
            kind = 2
            Self.append(id.rawValue, to: &body)
        case .request(let id, let message):
            kind = requestKind
            Self.append(id.rawValue, to: &body)
            message.encode(into: &body)
        case .domainShutdown(let domid):
            kind = 4
            Self.append(domid.rawValue, to: &body)
        case .domainDestroyed(let domid):
            kind = 5
            Self.append(domid.rawValue, to: &body)
        case .lostTransaction(let id, let transaction):
            kind = 6
            Self.append(id.rawValue, to: &body)
            Self.append(transaction, to: &body)
        case .nextTransaction(let id, let transaction):
            kind = 7
            Self.append(id.rawValue, to: &body)
            Self.append(transaction, to: &body)
        case .ringPrefix(let id, let prefix):
            kind = 8
            Self.append(id.rawValue, to: &body)
            body += prefix
        }
        let length = UInt32(truncatingIfNeeded: body.count - 4)  // kind and body; a message is at most 4 KiB
        // SAFETY: the bytes of a local integer, read only during the call.
        withUnsafeBytes(of: length.littleEndian) { body.replaceSubrange(0..<4, with: $0) }
        body[4] = kind
    }

    /// The entries in `bytes`, and how many bytes they took: decoding stops at the
    /// first record that is cut short or malformed (a crash mid-append), so the
    /// caller can truncate the journal there.
    public static func decode(_ bytes: [UInt8]) -> (entries: [JournalEntry], validLength: Int) {
        var entries: [JournalEntry] = []
        var offset = 0
        while offset + 5 <= bytes.count {
            guard let length = Int(exactly: read(UInt32.self, bytes, offset)), length >= 1,
                length <= 64 + XenstoreInterface.payloadMax, offset + 4 + length <= bytes.count,
                let entry = entry(kind: bytes[offset + 4], body: bytes[(offset + 5)..<(offset + 4 + length)])
            else { break }
            entries.append(entry)
            offset += 4 + length
        }
        return (entries, offset)
    }

    private static func entry(kind: UInt8, body: ArraySlice<UInt8>) -> JournalEntry? {
        let body = Array(body)
        func connection() -> ConnectionID { ConnectionID(read(UInt64.self, body, 0)) }
        switch (kind, body.count) {
        case (1, 11):
            let flags = body[10]
            return .connect(
                connection(),
                domid: DomID(read(UInt16.self, body, 8)),
                privileged: flags & 1 != 0,
                persistent: flags & 2 != 0
            )
        case (2, 8):
            return .disconnect(connection())
        case (3, 24...):
            var decoder = XenstoreDecoder()
            let messages = decoder.feed(body.dropFirst(8))
            guard messages.count == 1, decoder.buffered == 0 else { return nil }
            return .request(connection(), messages[0])
        case (4, 2):
            return .domainShutdown(DomID(read(UInt16.self, body, 0)))
        case (5, 2):
            return .domainDestroyed(DomID(read(UInt16.self, body, 0)))
        case (6, 12):
            return .lostTransaction(connection(), read(UInt32.self, body, 8))
        case (7, 12):
            return .nextTransaction(connection(), read(UInt32.self, body, 8))
        case (8, 8..<(8 + XenstoreHeader.size + XenstoreInterface.payloadMax)):
            return .ringPrefix(connection(), Array(body.dropFirst(8)))
        default:
            return nil
        }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// A little-endian integer at `offset` (the caller checked the length).
    private static func read<T: FixedWidthInteger>(_ type: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + index]) << (8 * index) }
        return value
    }
}

extension JournalEntry {
    /// Whether a request can change what the journal keeps: everything but reads
    /// outside a transaction (a read inside one is part of its conflict check).
    public static func matters(_ message: XenstoreMessage) -> Bool {
        guard message.txID == 0 else { return true }
        switch message.type {
        case .read, .directory, .directoryPart, .getPerms, .getDomainPath, .isDomainIntroduced, .getQuota,
            .getFeature:
            return false
        default:
            return true
        }
    }
}

extension JournalEntry {
    /// The message prefix each ring connection held when the journal ends.
    public static func ringPrefixes(in entries: [JournalEntry]) -> [ConnectionID: [UInt8]] {
        var prefixes: [ConnectionID: [UInt8]] = [:]
        for entry in entries {
            switch entry {
            case .ringPrefix(let id, let prefix): prefixes[id] = prefix.isEmpty ? nil : prefix
            case .request(let id, _), .connect(let id, _, _, _), .disconnect(let id): prefixes[id] = nil
            default: break
            }
        }
        return prefixes
    }
}

extension XenstoreEngine {
    /// Applies one journal entry, as the live daemon did when it recorded it.
    public mutating func apply(_ entry: JournalEntry) -> [XenstoreEffect] {
        switch entry {
        case .connect(let id, let domid, let privileged, let persistent):
            connect(id, domid: domid, privileged: privileged, persistent: persistent)
            return []
        case .disconnect(let id):
            disconnect(id)
            return []
        case .request(let id, let message):
            return handle(message, from: id)
        case .domainShutdown(let domid):
            return domainShutdown(domid)
        case .domainDestroyed(let domid):
            return domainDestroyed(domid)
        case .lostTransaction(let id, let transaction):
            guard connections[id] != nil else { return [] }
            let current = store
            connections[id]?.transactions[transaction] = Transaction(
                base: current,
                tree: current,
                syncedVersion: storeVersion,
                lost: true
            )
            return []
        case .nextTransaction(let id, let next):
            connections[id]?.nextTransactionID = next
            return []
        case .ringPrefix:
            return []  // transport state: see JournalEntry.ringPrefixes(in:)
        }
    }

    /// The engine rebuilt from a journal, with the effects the entries asked for
    /// (introduced domains to map) left to the caller: replies and events are moot.
    public static func replay(_ entries: [JournalEntry], quotas: Quotas = .cxenstored417) -> XenstoreEngine {
        var engine = XenstoreEngine(quotas: quotas)
        for entry in entries { _ = engine.apply(entry) }
        return engine
    }

    /// Every open transaction will commit with EAGAIN: its work cannot be carried
    /// into a snapshot. Take before ``snapshot()``.
    public mutating func loseOpenTransactions() {
        for id in connections.keys {
            guard var connection = connections[id], !connection.transactions.isEmpty else { continue }
            for key in connection.transactions.keys { connection.transactions[key]?.lost = true }
            connections[id] = connection
        }
    }

    /// The entries that rebuild this engine's state on a fresh engine (see
    /// ``JournalEntry``). Open transactions come back lost; call
    /// ``loseOpenTransactions()`` first so that the live engine agrees.
    public func snapshot() -> [JournalEntry] {
        let admin = ConnectionID(.max)
        var entries: [JournalEntry] = [.connect(admin, domid: .dom0, privileged: true, persistent: false)]
        func request(_ type: XenstoreMessageType, _ payload: [UInt8]) {
            entries.append(.request(admin, XenstoreMessage(type: type, payload: payload)))
        }
        for name in Quotas.wireNames {
            if let value = quotas[wireName: name] {
                request(.setQuota, XenstorePayload.strings([name, String(value)]))
            }
        }
        for domid in domains.keys.sorted() {
            guard let entry = domains[domid] else { continue }
            if entry.features != supportedFeatures {
                request(
                    .setFeature,
                    XenstorePayload.strings([String(domid.rawValue), String(entry.features.rawValue)])
                )
            }
            request(
                .introduce,
                XenstorePayload.strings([String(domid.rawValue), String(entry.frame), String(entry.port)])
            )
            if entry.shutdownReported { entries.append(.domainShutdown(domid)) }
            for (name, value)
                in (domainQuotas[domid].map { quotas in
                    Quotas.wireNames.compactMap { name in quotas[wireName: name].map { (name, $0) } }
                } ?? [])
            {
                request(.setQuota, XenstorePayload.strings([String(domid.rawValue), name, String(value)]))
            }
        }
        for (domid, features) in pendingFeatures.sorted(by: { $0.key < $1.key }) {
            request(.setFeature, XenstorePayload.strings([String(domid.rawValue), String(features.rawValue)]))
        }
        for (domid, target) in targets.sorted(by: { $0.key < $1.key }) {
            request(.setTarget, XenstorePayload.strings([String(domid.rawValue), String(target.rawValue)]))
        }
        // The tree, parents before children, children in creation order — from an empty
        // root, since a fresh engine's initial nodes may be gone from this one.
        for name in Tree(generation: 0).root.children.keys { request(.rm, XenstorePayload.string("/" + name)) }
        Tree.walk(store.root, at: XenstorePath(trusted: "/")) { path, node in
            if !path.isRoot || !node.value.isEmpty {
                request(.write, XenstorePayload.string(path.rawValue) + node.value)
            }
            request(.setPerms, XenstorePayload.string(path.rawValue) + node.perms.wire)
        }
        for (path, perms) in specialPerms.sorted(by: { $0.key < $1.key }) {
            request(.setPerms, XenstorePayload.string(path) + perms.wire)
        }
        entries.append(.disconnect(admin))
        for (id, connection) in connections {
            entries.append(
                .connect(
                    id,
                    domid: connection.domid,
                    privileged: connection.privileged,
                    persistent: connection.persistent
                )
            )
            for watch in connection.watches {
                // As the client sent it: relative again if it was.
                let path = reportedPath(watch.path, for: watch, connection.caller)
                entries.append(
                    .request(
                        id,
                        XenstoreMessage(type: .watch, payload: XenstorePayload.string(path) + watch.token + [0])
                    )
                )
            }
            for transaction in connection.transactions.keys.sorted() {
                entries.append(.lostTransaction(id, transaction))
            }
            entries.append(.nextTransaction(id, connection.nextTransactionID))
        }
        return entries
    }

    /// Guest rings registered before a restart, to be served again (their ids and
    /// domains), and the introduced domains with their ring frame and port.
    public var persistentConnections: [(id: ConnectionID, domid: DomID)] {
        connections.filter(\.value.persistent).map { ($0.key, $0.value.domid) }
    }

    public var introducedDomains: [(domid: DomID, frame: UInt64, port: UInt32)] {
        domains.keys.sorted().compactMap { domid in domains[domid].map { (domid, $0.frame, $0.port) } }
    }

    /// The largest connection id in use (a restarted daemon allocates above it).
    public var highestConnectionID: ConnectionID? { connections.keys.max() }
}
