//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import PropertyBased
import Testing
import XenABI
import XenstoreWire

@testable import XenstoreCore

/// xenstored's journal: replaying what the daemon recorded rebuilds its state, and a
/// snapshot rebuilds the same state in fewer entries.
@Suite("Journal")
struct JournalTests {
    /// Applies random requests like the property test, recording each input.
    static func run(_ words: [UInt64]) -> (XenstoreEngine, [JournalEntry]) {
        var engine = XenstoreEngine(quotas: Quotas(nodes: 12, watches: 3, transactions: 2, transactionNodes: 6))
        var journal: [JournalEntry] = []
        func record(_ entry: JournalEntry) {
            journal.append(entry)
            _ = engine.apply(entry)
        }
        let ids = (0..<5).map { ConnectionID(UInt64($0)) }
        record(.connect(ids[0], domid: .dom0, privileged: true, persistent: false))
        for index in 1..<5 {
            record(.connect(ids[index], domid: DomID(UInt16(index)), privileged: false, persistent: true))
        }
        for word in words {
            let id = ids[Int(word % 5)]
            switch (word >> 3) % 32 {
            case 28:
                record(.domainDestroyed(DomID(UInt16((word >> 8) % 4))))
            case 29:
                record(.domainShutdown(DomID(UInt16((word >> 8) % 4))))
            case 30:
                record(.disconnect(id))
                record(.connect(id, domid: DomID(UInt16(id.rawValue)), privileged: id.rawValue == 0, persistent: true))
            case let kind:
                let type = UInt32(kind == 31 ? 0xFFFF : kind)
                let tx = UInt32((word >> 48) % 4 == 0 ? (word >> 50) % 3 : 0)
                let message = XenstoreMessage(
                    type: XenstoreMessageType(rawValue: type),
                    reqID: UInt32(truncatingIfNeeded: word >> 20),
                    txID: tx,
                    payload: EnginePropertyTests.payload(word)
                )
                record(.request(id, message))
            }
        }
        return (engine, journal)
    }

    /// Everything a restarted daemon must have: nodes, permissions, domains, each
    /// connection's watches and open transactions.
    static func state(_ engine: XenstoreEngine) -> [String] {
        var lines: [String] = []
        func visit(_ path: String) {
            let value = engine.value(at: path) ?? []
            lines.append("\(path)=\(value) \(engine.permissions(of: path)?.description ?? "?")")
            for child in engine.children(of: path) ?? [] { visit(path == "/" ? "/\(child)" : "\(path)/\(child)") }
        }
        visit("/")
        for special in ["@introduceDomain", "@releaseDomain"] {
            lines.append("\(special) \(engine.permissions(of: special)?.description ?? "?")")
        }
        lines += engine.introducedDomains.map { "domain \($0.domid) \($0.frame) \($0.port)" }
        for id in engine.connectionIDs {
            lines.append("\(id) watches \(engine.watchCount(of: id)) transactions \(engine.openTransactions(of: id))")
        }
        lines.append("quotas \(engine.quotas)")
        return lines
    }

    @Test func replayingTheJournalRebuildsTheState() async {
        let words = Gen.uint64(in: 0...UInt64.max).array(of: 1...120)
        await propertyCheck(count: 150, input: words) { words in
            let (live, journal) = Self.run(words)
            let bytes = journal.flatMap { $0.encoded() }
            let (decoded, length) = JournalEntry.decode(bytes)
            #expect(decoded == journal && length == bytes.count)
            let replayed = XenstoreEngine.replay(
                decoded,
                quotas: Quotas(nodes: 12, watches: 3, transactions: 2, transactionNodes: 6)
            )
            #expect(Self.state(replayed) == Self.state(live))
        }
    }

    @Test func aSnapshotRebuildsTheSameState() async {
        let words = Gen.uint64(in: 0...UInt64.max).array(of: 1...120)
        await propertyCheck(count: 150, input: words) { words in
            var (live, _) = Self.run(words)
            live.loseOpenTransactions()
            let snapshot = live.snapshot()
            // Quotas without a wire name (transaction nodes, path length) come from the
            // daemon's command line, as they did the first time.
            let quotas = Quotas(nodes: 12, watches: 3, transactions: 2, transactionNodes: 6)
            let restored = XenstoreEngine.replay(snapshot, quotas: quotas)
            #expect(Self.state(restored) == Self.state(live))
            #expect(restored.invariantViolations().isEmpty)
            // Taking a snapshot of the restored engine changes nothing more.
            #expect(XenstoreEngine.replay(restored.snapshot(), quotas: quotas).snapshot() == restored.snapshot())
        }
    }

    /// A crash in the middle of an append leaves a partial record: decoding stops
    /// before it, whatever the bytes.
    @Test func aTornTailIsIgnored() {
        let entries: [JournalEntry] = [
            .connect(ConnectionID(3), domid: DomID(7), privileged: false, persistent: true),
            .request(ConnectionID(3), XenstoreMessage(type: .write, payload: Array("a\0b".utf8))),
            .domainShutdown(DomID(7)),
            .ringPrefix(ConnectionID(3), [3, 0, 0, 0, 0, 0, 0, 0]),
            .ringPrefix(ConnectionID(3), []),
        ]
        let bytes = entries.flatMap { $0.encoded() }
        for cut in 0..<bytes.count {
            let (decoded, length) = JournalEntry.decode(Array(bytes.prefix(cut)))
            #expect(decoded == Array(entries.prefix(decoded.count)))
            #expect(length <= cut)
        }
        #expect(JournalEntry.decode(bytes + [0xFF, 0xFF, 0xFF, 0x7F, 1]).entries == entries)
    }

    /// A request's record, which the daemon writes field by field, is the general
    /// encoder's record, and decodes back to the request (payloads empty to full, ids
    /// and header words across their range, a record buffer reused from a bigger one).
    @Test func aRequestRecordIsTheGeneralEncoding() {
        var generator = SystemRandomNumberGenerator()
        var record = [UInt8](repeating: 0xAA, count: 5000)
        for payloadCount in [0, 1, 2, 17, 4095, 4096] {
            let message = XenstoreMessage(
                type: XenstoreMessageType(rawValue: UInt32.random(in: 0...30, using: &generator)),
                reqID: UInt32.random(in: 0...UInt32.max, using: &generator),
                txID: UInt32.random(in: 0...UInt32.max, using: &generator),
                payload: (0..<payloadCount).map { _ in UInt8.random(in: 0...255, using: &generator) }
            )
            let entry = JournalEntry.request(ConnectionID(UInt64.random(in: 0...UInt64.max)), message)
            entry.encode(into: &record)
            #expect(record == JournalEntry.encodedByBody(entry))
            #expect(JournalEntry.decode(record).entries == [entry])
        }
    }

    /// A ring connection's message prefix lasts until its message, the connection or
    /// an explicit end; the engine's state does not depend on it.
    @Test func ringPrefixesEndWithTheirMessage() {
        let ring = ConnectionID(3)
        let other = ConnectionID(4)
        var entries: [JournalEntry] = [
            .connect(ring, domid: DomID(7), privileged: false, persistent: true),
            .connect(other, domid: DomID(8), privileged: false, persistent: true),
            .ringPrefix(ring, [1, 2, 3]),
            .ringPrefix(other, [9]),
        ]
        #expect(JournalEntry.ringPrefixes(in: entries) == [ring: [1, 2, 3], other: [9]])
        entries.append(.request(ring, XenstoreMessage(type: .read, payload: Array("a\0".utf8))))
        #expect(JournalEntry.ringPrefixes(in: entries) == [other: [9]])
        entries.append(.ringPrefix(other, []))
        #expect(JournalEntry.ringPrefixes(in: entries).isEmpty)
        entries += [.ringPrefix(ring, [5]), .disconnect(ring)]
        #expect(JournalEntry.ringPrefixes(in: entries).isEmpty)
        #expect(JournalEntry.decode(entries.flatMap { $0.encoded() }).entries == entries)
    }

    /// A transaction survives a replay of the journal; one open when a snapshot is
    /// taken commits with EAGAIN (and so does the live one).
    @Test func transactionsAcrossReplayAndSnapshot() {
        var engine = XenstoreEngine()
        var journal: [JournalEntry] = []
        func record(_ entry: JournalEntry) -> [XenstoreEffect] {
            journal.append(entry)
            return engine.apply(entry)
        }
        let guest = ConnectionID(9)
        _ = record(.connect(ConnectionID(1), domid: .dom0, privileged: true, persistent: false))
        _ = record(.request(ConnectionID(1), XenstoreMessage(type: .mkdir, payload: Array("/local/domain/4\0".utf8))))
        _ = record(
            .request(
                ConnectionID(1),
                XenstoreMessage(type: .setPerms, payload: Array("/local/domain/4\0n4\0".utf8))
            )
        )
        _ = record(.connect(guest, domid: DomID(4), privileged: false, persistent: true))
        _ = record(.request(guest, XenstoreMessage(type: .transactionStart, payload: [0])))
        _ = record(.request(guest, XenstoreMessage(type: .write, txID: 1, payload: Array("data\0x".utf8))))
        var replayed = XenstoreEngine.replay(journal)
        let end = XenstoreMessage(type: .transactionEnd, txID: 1, payload: Array("T\0".utf8))
        #expect(replayed.handle(end, from: guest).contains(.send(to: guest, .ok(replyingTo: end))))
        #expect(replayed.value(at: "/local/domain/4/data") == Array("x".utf8))

        engine.loseOpenTransactions()
        var restored = XenstoreEngine.replay(engine.snapshot())
        #expect(restored.openTransactions(of: guest) == [1])
        #expect(restored.handle(end, from: guest).contains(.send(to: guest, .error(.EAGAIN, replyingTo: end))))
        #expect(engine.handle(end, from: guest).contains(.send(to: guest, .error(.EAGAIN, replyingTo: end))))
        // The next transaction id carries on.
        let start = XenstoreMessage(type: .transactionStart, payload: [0])
        #expect(
            restored.handle(start, from: guest).contains(
                .send(to: guest, .reply(to: start, payload: Array("2\0".utf8)))
            )
        )
    }
}
