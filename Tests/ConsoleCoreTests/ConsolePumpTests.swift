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

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite("ConsolePump")
struct ConsolePumpTests {
    // MARK: The output table, row by row.

    @Test func channelWithoutClientReadsNothing() {
        var pump = ConsolePump(.init(kind: .channel, logging: true), now: 0)
        #expect(pump.planOutput(readable: 100, sink: .waitingForClient, now: 0) == .idle(.client))
        #expect(pump.planOutput(readable: 100, sink: .none, now: 0) == .idle(.client))
        #expect(pump.counters.sinkState == .none)
        #expect(pump.bucket.tokens == TokenBucket.Configuration.default.burst, "no tokens spent on backpressure")
    }

    @Test func channelWithClientIsPacedByTheClient() {
        var pump = ConsolePump(.init(kind: .channel), now: 0)
        let plan = pump.planOutput(readable: 2048, sink: .connected(canAccept: 100), now: 0)
        #expect(
            plan == OutputPlan(count: 100, sendToClient: true, writeToLog: false, appendToHistory: false, wait: .client)
        )
        #expect(pump.counters.sinkState == .connected)
        // The client took 60 of the 100: consume 60, refund 40 tokens.
        #expect(pump.commitOutput(Array(repeating: 1, count: 60), plan: plan, now: 0) == 60)
        #expect(pump.counters.bytesOut == 60)
        #expect(pump.bucket.tokens == TokenBucket.Configuration.default.burst - 60)
        #expect(pump.history.isEmpty, "channels keep no history")
    }

    @Test func channelWithClientAndLogWritesBoth() {
        var pump = ConsolePump(.init(kind: .channel, logging: true), now: 0)
        let plan = pump.planOutput(readable: 300, sink: .connected(canAccept: 4096), now: 0)
        #expect(
            plan == OutputPlan(count: 300, sendToClient: true, writeToLog: true, appendToHistory: false, wait: .event)
        )
    }

    @Test func clientThatCanAcceptNothingWaitsForTheClient() {
        var pump = ConsolePump(.init(kind: .primary, logging: true), now: 0)
        #expect(pump.planOutput(readable: 10, sink: .connected(canAccept: 0), now: 0) == .idle(.client))
        #expect(pump.planOutput(readable: 10, sink: .connected(canAccept: -7), now: 0) == .idle(.client))
    }

    /// The worked example: console 0, log on, no client.
    @Test func primaryWithoutClientLogsAndKeepsHistory() {
        var pump = ConsolePump(.init(kind: .primary, logging: true), now: 0)
        let plan = pump.planOutput(readable: 2048, sink: .waitingForClient, now: 0)
        #expect(
            plan == OutputPlan(count: 2048, sendToClient: false, writeToLog: true, appendToHistory: true, wait: .event)
        )
        let data = [UInt8](repeating: 0x41, count: 2048)
        #expect(pump.commitOutput(data, plan: plan, now: 0) == 2048)
        #expect(pump.counters.bytesOut == 2048)
        #expect(pump.history.retained == data)
        #expect(pump.counters.ringFullEvents == 1)
    }

    @Test func primaryWithoutClientOrLogStillDrainsIntoHistory() {
        var pump = ConsolePump(.init(kind: .primary, historyCapacity: 4), now: 0)
        let plan = pump.planOutput(readable: 6, sink: .none, now: 0)
        #expect(
            plan == OutputPlan(count: 6, sendToClient: false, writeToLog: false, appendToHistory: true, wait: .event)
        )
        pump.commitOutput(bytes("abcdef"), plan: plan, now: 0)
        #expect(pump.counters.droppedBytes == 2)
        #expect(pump.replayForNewClient() == bytes("\r\n[conch: 2 bytes of earlier output dropped]\r\ncdef"))
    }

    @Test func primaryWithClientSendsLogsAndKeepsHistory() {
        var pump = ConsolePump(.init(kind: .primary, logging: true), now: 0)
        let plan = pump.planOutput(readable: 50, sink: .connected(canAccept: 20), now: 0)
        #expect(
            plan == OutputPlan(count: 20, sendToClient: true, writeToLog: true, appendToHistory: true, wait: .client)
        )
        pump.commitOutput(bytes("login: "), plan: plan, now: 0)
        #expect(pump.replayForNewClient() == bytes("login: "))
        #expect(pump.counters.bytesOut == 7)
    }

    @Test func closedSinkStopsEverything() {
        var pump = ConsolePump(.init(kind: .primary, logging: true), now: 0)
        #expect(pump.planOutput(readable: 50, sink: .closed, now: 0) == .idle(.never))
        #expect(pump.counters.sinkState == .closed)
        pump.updateSink(.waitingForClient)
        #expect(pump.counters.sinkState == .waitingForClient)
    }

    @Test func emptyOrInvalidReadableCountsPlanNothing() {
        var pump = ConsolePump(.init(kind: .primary, logging: true), now: 0)
        #expect(pump.planOutput(readable: 0, sink: .none, now: 0) == .idle(.event))
        #expect(pump.planOutput(readable: 2049, sink: .none, now: 0) == .idle(.event))
        #expect(pump.planOutput(readable: -1, sink: .none, now: 0) == .idle(.event))
        #expect(pump.counters.ringFullEvents == 0)
    }

    @Test func ringFullEventsCountTransitionsOnly() {
        var pump = ConsolePump(.init(kind: .channel), now: 0)
        for readable in [2048, 2048, 2048, 100, 2048, 0, 2048] {
            _ = pump.planOutput(readable: readable, sink: .waitingForClient, now: 0)
        }
        #expect(pump.counters.ringFullEvents == 3)
    }

    @Test func throttlingWaitsOnATimerAndCountsPeriods() {
        var pump = ConsolePump(.init(kind: .primary, rate: .init(rate: 1000, burst: 100)), now: 0)
        let first = pump.planOutput(readable: 300, sink: .none, now: 0)
        #expect(first.count == 100)
        #expect(first.wait == .timer(nanoseconds: 100_000_000))  // the next 100 (clamped to burst)
        pump.commitOutput(Array(repeating: 0, count: 100), plan: first, now: 0)
        #expect(pump.counters.throttledPeriods == 1)
        let second = pump.planOutput(readable: 200, sink: .none, now: 100_000_000)
        #expect(second.count == 100)
        #expect(pump.counters.throttledPeriods == 1, "the same period goes on")
    }

    @Test func throttledClientLimitedStepWaitsForTheClientSizedRest() {
        var pump = ConsolePump(.init(kind: .channel, rate: .init(rate: 1000, burst: 10)), now: 0)
        let plan = pump.planOutput(readable: 2048, sink: .connected(canAccept: 30), now: 0)
        #expect(plan.count == 10)
        #expect(plan.wait == .timer(nanoseconds: 10_000_000), "10 more tokens, not 2038")
    }

    // MARK: Input.

    @Test func inputTakesWhatFitsAndLeavesTheRestWithTheClient() {
        var pump = ConsolePump(.init(kind: .channel), now: 0)
        #expect(pump.planInput(freeSpace: 1024, clientAvailable: 80) == 80)
        #expect(pump.planInput(freeSpace: 10, clientAvailable: 80) == 10)
        #expect(pump.planInput(freeSpace: 0, clientAvailable: 80) == 0)
        #expect(pump.planInput(freeSpace: nil, clientAvailable: 80) == 0)
        #expect(pump.planInput(freeSpace: 100, clientAvailable: -2) == 0)
        pump.commitInput(count: 10, now: 0)
        pump.commitInput(count: -3, now: 0)
        #expect(pump.counters.bytesIn == 10)
    }

    // MARK: Guard integration.

    @Test func quarantineStopsBothDirectionsAndIsCountedOnce() {
        var pump = ConsolePump(.init(kind: .primary, logging: true), now: 0)
        let verdict = pump.inspect(RingSnapshot(outProd: 9999, outCons: 0, inProd: 0, inCons: 0), now: 0)
        #expect(verdict == .quarantine(reason: "invalid out ring indices: prod=9999 cons=0 size=2048"))
        _ = pump.inspect(RingSnapshot(outProd: 9999, outCons: 0, inProd: 0, inCons: 0), now: 1)
        _ = pump.notification(now: 2)
        #expect(pump.isQuarantined)
        #expect(pump.counters.quarantines == 1)
        #expect(pump.counters.quarantineReason == "invalid out ring indices: prod=9999 cons=0 size=2048")
        #expect(pump.counters.notifications == 1)
        #expect(pump.planOutput(readable: 10, sink: .connected(canAccept: 100), now: 3) == .idle(.never))
        #expect(pump.planInput(freeSpace: 1024, clientAvailable: 10) == 0)
    }

    @Test func flagWritesAndRewritesAreCounted() {
        var pump = ConsolePump(.init(kind: .primary), now: 0)
        _ = pump.inspect(RingSnapshot(outProd: 0, outCons: 0, inProd: 0, inCons: 0, connection: 1), now: 0)
        pump.backendWroteFlag(.connected)
        #expect(pump.counters.flagTransitions == 1)
        let verdict = pump.inspect(RingSnapshot(outProd: 0, outCons: 0, inProd: 0, inCons: 0, connection: 1), now: 0)
        #expect(verdict == .restoreFlag(.connected))
        #expect(pump.counters.flagTransitions == 2)
    }

    @Test func movingBytesCountsAsProgressAgainstStorms() {
        let thresholds = RingGuard.Thresholds(stormNotifications: 2, stormWindow: 1_000_000_000)
        var pump = ConsolePump(.init(kind: .channel, guardThresholds: thresholds), now: 0)
        for step in 0..<10 {
            #expect(pump.notification(now: UInt64(step)) == .ok)
            #expect(pump.notification(now: UInt64(step)) == .ok)
            let plan = pump.planOutput(readable: 1, sink: .connected(canAccept: 10), now: UInt64(step))
            pump.commitOutput([0], plan: plan, now: UInt64(step))
        }
        #expect(pump.notification(now: 10) == .ok)
        #expect(pump.notification(now: 10) == .ok)
        guard case .quarantine = pump.notification(now: 10) else {
            Issue.record("three quiet notifications over a threshold of two must quarantine")
            return
        }
    }

    // MARK: Flow control end to end.

    /// A channel driven by a model shell through random client readiness, partial
    /// client writes and `kill -9` restarts at any point of a step. Following the
    /// plan's rule (consume only what reached the client), nothing is ever lost, and
    /// the only repeats are the bytes of a step interrupted between delivery and
    /// consumption.
    @Test func channelLosesNothingAcrossCrashes() async {
        await propertyCheck(
            count: 200,
            input: Gen.int(in: 0...3000).array(of: 1...40),
            Gen.int(in: -1...3000).array(of: 1...40),
            Gen.int(in: 0...9).array(of: 1...40)
        ) { guestWrites, clientCapacities, crashes in
            let stream = (0..<guestWrites.reduce(0, +)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 7) }
            var written = 0  // out_prod as a stream offset
            var consumed = 0  // out_cons as a stream offset (survives crashes: it is in the page)
            var delivered: [(start: Int, bytes: [UInt8])] = []
            var pump = ConsolePump(.init(kind: .channel), now: 0)
            var now: UInt64 = 0
            let steps = max(guestWrites.count, clientCapacities.count) * 3
            for step in 0..<steps {
                now += 1_000_000
                let want = guestWrites[step % guestWrites.count]
                written += min(want, 2048 - (written - consumed), stream.count - written)
                let capacity = clientCapacities[step % clientCapacities.count]
                let sink: SinkReadiness = capacity < 0 ? .waitingForClient : .connected(canAccept: capacity)
                let plan = pump.planOutput(readable: written - consumed, sink: sink, now: now)
                if plan.count == 0 { continue }
                let peeked = Array(stream[consumed..<consumed + plan.count])
                let crash = crashes[step % crashes.count]
                if crash == 0 {  // killed after peeking, before writing
                    pump = ConsolePump(.init(kind: .channel), now: now)
                    continue
                }
                let accepted = Array(peeked.prefix(crash == 1 ? plan.count / 2 : plan.count))
                delivered.append((consumed, accepted))
                if crash == 2 {  // killed after the client write, before advancing out_cons
                    pump = ConsolePump(.init(kind: .channel), now: now)
                    continue
                }
                consumed += pump.commitOutput(accepted, plan: plan, now: now)
            }
            // Drain with a generous client so everything written must arrive.
            while consumed < written {
                now += 1_000_000_000
                let plan = pump.planOutput(readable: written - consumed, sink: .connected(canAccept: 4096), now: now)
                let chunk = Array(stream[consumed..<consumed + plan.count])
                delivered.append((consumed, chunk))
                consumed += pump.commitOutput(chunk, plan: plan, now: now)
            }
            // Every chunk is the stream at its offset, and chunks cover [0, written) without gaps.
            var covered = 0
            for (start, chunk) in delivered {
                #expect(Array(stream[start..<start + chunk.count]) == chunk)
                #expect(start <= covered, "a gap: bytes were consumed without being delivered")
                covered = max(covered, start + chunk.count)
            }
            #expect(covered == written)
            #expect(pump.counters.bytesOut <= UInt64(written))
        }
    }
}
