//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import PropertyBased
import Testing
import XenABI

private func page(out: (UInt32, UInt32) = (0, 0), in: (UInt32, UInt32) = (0, 0), flag: UInt8? = nil) -> RingSnapshot {
    RingSnapshot(outProd: out.0, outCons: out.1, inProd: `in`.0, inCons: `in`.1, connection: flag)
}

@Suite("RingGuard")
struct RingGuardTests {
    @Test func invalidOutIndicesQuarantineWithTheirValues() {
        var guardian = RingGuard()
        #expect(guardian.inspect(page(out: (2048, 0)), now: 0) == .ok)
        #expect(
            guardian.inspect(page(out: (5000, 0)), now: 0)
                == .quarantine(reason: "invalid out ring indices: prod=5000 cons=0 size=2048")
        )
        #expect(guardian.isQuarantined)
    }

    @Test func invalidInIndicesQuarantine() {
        var guardian = RingGuard()
        // The guest's in_cons ran past the backend's in_prod: prod − cons wraps huge.
        #expect(
            guardian.inspect(page(in: (10, 11)), now: 0)
                == .quarantine(reason: "invalid in ring indices: prod=10 cons=11 size=1024")
        )
    }

    @Test func indicesAcrossTheWrapAreValid() {
        var guardian = RingGuard()
        #expect(guardian.inspect(page(out: (UInt32.max - 5, UInt32.max - 20)), now: 0) == .ok)
        #expect(guardian.inspect(page(out: (5, UInt32.max - 20)), now: 0) == .ok)  // 26 readable
        var other = RingGuard()
        #expect(other.inspect(page(out: (2000, 1990), in: (3, UInt32.max)), now: 0) == .ok)
    }

    /// The quarantine is sticky: the first reason is kept and returned every time.
    @Test func quarantineIsSticky() {
        var guardian = RingGuard()
        let first = guardian.inspect(page(out: (4096, 0)), now: 0)
        #expect(guardian.inspect(page(), now: 1) == first)
        #expect(guardian.notification(now: 2) == first)
    }

    @Test func producerJumpOf2To31Quarantines() {
        var guardian = RingGuard()
        #expect(guardian.inspect(page(out: (100, 100)), now: 0) == .ok)
        let jumped: UInt32 = 100 &+ (1 << 31)
        // The guest also forged out_cons so the indices themselves look valid.
        #expect(
            guardian.inspect(page(out: (jumped, jumped &- 10)), now: 0)
                == .quarantine(
                    reason: "out ring producer moved from 100 to \(jumped) (backwards, or a jump of 2^31 or more)"
                )
        )
    }

    @Test func largeLegitimateForwardMovesAreFine() {
        var guardian = RingGuard()
        #expect(guardian.inspect(page(out: (0, 0)), now: 0) == .ok)
        let far: UInt32 = (1 << 31) - 1
        #expect(guardian.inspect(page(out: (far, far - 100)), now: 0) == .ok)
    }

    @Test func producerMovingBackwardsQuarantines() {
        var guardian = RingGuard()
        #expect(guardian.inspect(page(out: (100, 95)), now: 0) == .ok)
        // 97 − 95 = 2 is a valid ring, but the guest retracted 3 published bytes.
        guard case .quarantine(let reason) = guardian.inspect(page(out: (97, 95)), now: 0) else {
            Issue.record("a backwards producer must quarantine")
            return
        }
        #expect(reason.hasPrefix("out ring producer moved from 100 to 97"))
    }

    @Test func inConsumerMovingBackwardsQuarantines() {
        var guardian = RingGuard()
        #expect(guardian.inspect(page(in: (50, 40)), now: 0) == .ok)
        guard case .quarantine(let reason) = guardian.inspect(page(in: (50, 30)), now: 0) else {
            Issue.record("a backwards consumer must quarantine")
            return
        }
        #expect(reason.hasPrefix("in ring consumer moved from 40 to 30"))
    }

    /// The worked example in the type's documentation.
    @Test func flagRewritesAreToleratedThreeTimesThenQuarantine() {
        var guardian = RingGuard()
        guardian.backendWroteFlag(.connected)
        #expect(guardian.inspect(page(out: (10, 0), flag: 0), now: 0) == .ok)
        #expect(guardian.inspect(page(out: (10, 0), flag: 1), now: 0) == .restoreFlag(.connected))
        #expect(guardian.inspect(page(out: (10, 0), flag: 1), now: 0) == .ok, "the same mismatch is counted once")
        #expect(guardian.flagRewrites == 1)
        for _ in 2...3 {
            guardian.backendWroteFlag(.connected)
            #expect(guardian.inspect(page(out: (10, 0), flag: 7), now: 0) == .restoreFlag(.connected))
        }
        guardian.backendWroteFlag(.connected)
        #expect(
            guardian.inspect(page(out: (10, 0), flag: 1), now: 0)
                == .quarantine(reason: "guest rewrote the connection flag 4 times (saw 1, backend wrote 0)")
        )
    }

    @Test func zeroToleranceQuarantinesTheFirstRewrite() {
        var guardian = RingGuard(thresholds: .init(maxFlagRewrites: 0))
        guardian.backendWroteFlag(.disconnected)
        guard case .quarantine = guardian.inspect(page(flag: 0), now: 0) else {
            Issue.record("expected quarantine")
            return
        }
    }

    @Test func flagRulesAreSkippedWithoutAFlag() {
        var guardian = RingGuard()
        // Legacy backend: never wrote the flag, so whatever the byte holds is fine.
        #expect(guardian.inspect(page(flag: 1), now: 0) == .ok)
        #expect(guardian.inspect(page(flag: 0), now: 0) == .ok)
        #expect(guardian.inspect(page(), now: 0) == .ok)
        #expect(guardian.flagRewrites == 0)
    }

    @Test func flagTransitionsCountEveryChangeOnce() {
        var guardian = RingGuard()
        _ = guardian.inspect(page(flag: 1), now: 0)  // toolstack's DISCONNECTED
        guardian.backendWroteFlag(.connected)  // 1 → 0
        _ = guardian.inspect(page(flag: 0), now: 0)  // the same value: no change
        _ = guardian.inspect(page(flag: 1), now: 0)  // guest flips: 0 → 1
        guardian.backendWroteFlag(.connected)  // restored: 1 → 0
        guardian.backendWroteFlag(.connected)  // no change
        #expect(guardian.flagTransitions == 3)
    }

    @Test func eventStormQuarantinesAfterTheThreshold() {
        var guardian = RingGuard()
        for index in 0..<10_000 {
            #expect(guardian.notification(now: UInt64(index) * 1000) == .ok)
        }
        #expect(
            guardian.notification(now: 10_000_000)
                == .quarantine(reason: "event storm: more than 10000 notifications within 1000 ms without progress")
        )
    }

    @Test func progressOrANewWindowResetsTheStormCount() {
        var guardian = RingGuard(thresholds: .init(stormNotifications: 3, stormWindow: 100))
        for _ in 0..<3 { #expect(guardian.notification(now: 0) == .ok) }
        guardian.progress(now: 10)
        for _ in 0..<3 { #expect(guardian.notification(now: 10) == .ok) }
        // A guest index moving counts as progress too.
        #expect(guardian.inspect(page(out: (1, 0)), now: 20) == .ok)
        for _ in 0..<3 { #expect(guardian.notification(now: 20) == .ok) }
        // The window (100 ns) ends: counting restarts.
        for _ in 0..<3 { #expect(guardian.notification(now: 120) == .ok) }
        guard case .quarantine = guardian.notification(now: 121) else {
            Issue.record("the fourth quiet notification in one window must quarantine")
            return
        }
    }

    /// An honest guest and backend, from any starting index (including near 2^32),
    /// with any interleaving of writes, reads, input and notifications, are never
    /// quarantined.
    @Test func honestRingsAreNeverQuarantined() async {
        await propertyCheck(
            count: 200,
            input: Gen.uint32(),
            Gen.uint32(),
            Gen.int(in: 0...5).array(of: 1...200),
            Gen.int(in: 0...2048).array(of: 200)
        ) { outStart, inStart, operations, amounts in
            var guardian = RingGuard()
            guardian.backendWroteFlag(.connected)
            var outProd = outStart
            var outCons = outStart
            var inProd = inStart
            var inCons = inStart
            var now: UInt64 = 0
            for (operation, amount) in zip(operations, amounts) {
                now += 1
                switch operation {
                case 0: outProd &+= UInt32(min(amount, 2048 - Int(outProd &- outCons)))  // guest writes
                case 1: outCons &+= UInt32(min(amount, Int(outProd &- outCons)))  // backend reads
                case 2: inProd &+= UInt32(min(amount, 1024 - Int(inProd &- inCons)))  // backend writes input
                case 3: inCons &+= UInt32(min(amount, Int(inProd &- inCons)))  // guest reads input
                case 4:
                    #expect(guardian.notification(now: now) == .ok)
                    continue
                default:
                    guardian.progress(now: now)
                }
                let snapshot = RingSnapshot(
                    outProd: outProd,
                    outCons: outCons,
                    inProd: inProd,
                    inCons: inCons,
                    connection: 0
                )
                #expect(guardian.inspect(snapshot, now: now) == .ok)
            }
        }
    }
}
