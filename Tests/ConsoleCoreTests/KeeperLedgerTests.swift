//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Testing
import XenABI

@Suite("Keeper ledger: nothing lost, nothing twice across a consoled restart")
struct KeeperLedgerTests {
    @Test func theFirstAttachRecordsTheBaseAndReplaysNothing() {
        var ledger = KeeperLedger()
        #expect(ledger.deliveredOutCons == nil)
        #expect(ledger.attach(outCons: 100, inProd: 7, history: 0) == .nothing)
        #expect(ledger.deliveredOutCons == 100)
    }

    @Test func outputTheKeeperReceivedIsConsumedNotResent() {
        var ledger = KeeperLedger()
        _ = ledger.attach(outCons: 100, inProd: 0, history: 0)
        ledger.received(30)  // the dead consoled handed 30 bytes over…
        // …but consumed only 10 of them from the ring before it died.
        #expect(ledger.attach(outCons: 110, inProd: 0, history: 0) == .nothing)
        let target = try! #require(ledger.deliveredOutCons)
        #expect(target == 130)
        #expect(KeeperLedger.alreadyDelivered(outCons: 110, delivered: target) == 20)
        #expect(KeeperLedger.alreadyDelivered(outCons: 130, delivered: target) == 0)
    }

    @Test func inputTheRingNeverGotIsSentAgainOnce() {
        var ledger = KeeperLedger()
        _ = ledger.attach(outCons: 0, inProd: 50, history: 0)
        ledger.sent(40)  // the dead consoled took 40 bytes; 25 reached the ring
        #expect(ledger.attach(outCons: 0, inProd: 75, history: 40) == .resend(count: 15))
        // Sent anew, counted anew; a second restart with all of it in the ring replays nothing.
        ledger.sent(15)
        #expect(ledger.attach(outCons: 0, inProd: 90, history: 40) == .nothing)
    }

    @Test func positionsWrapAsRingIndicesDo() {
        var ledger = KeeperLedger()
        _ = ledger.attach(outCons: UInt32.max - 5, inProd: UInt32.max - 2, history: 0)
        ledger.received(10)
        ledger.sent(8)
        #expect(ledger.deliveredOutCons == 4)
        #expect(KeeperLedger.alreadyDelivered(outCons: UInt32.max - 1, delivered: 4) == 6)
        #expect(ledger.attach(outCons: 4, inProd: 3, history: 8) == .resend(count: 2))
    }

    /// The ring lives in guest memory: a guest that scribbles on an index gets no
    /// replay of anything, and never a trap.
    @Test func aScribbledIndexReplaysNothing() {
        var ledger = KeeperLedger()
        _ = ledger.attach(outCons: 0, inProd: 0, history: 0)
        ledger.sent(10)
        #expect(ledger.attach(outCons: 0, inProd: 0x8000_0000, history: 10) == .impossible(unconfirmed: 0x8000_000A))
        #expect(ledger.attach(outCons: 0, inProd: 11, history: 10) == .impossible(unconfirmed: UInt32.max))
        #expect(KeeperLedger.alreadyDelivered(outCons: 0, delivered: UInt32(ConsoleInterface.outSize) + 1) == nil)
        #expect(KeeperLedger.alreadyDelivered(outCons: 10, delivered: 5) == nil)
    }
}
