//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import Testing

@Suite("ConsoleCounters")
struct ConsoleCountersTests {
    private func json(_ counters: ConsoleCounters) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(counters), as: UTF8.self)
    }

    /// The documented shape: every key present, snake_case, null reason.
    @Test func stableJSONShape() throws {
        var counters = ConsoleCounters()
        counters.bytesOut = 4096
        counters.flagTransitions = 1
        counters.notifications = 3
        counters.sinkState = .waitingForClient
        #expect(
            try json(counters)
                == #"{"bytes_in":0,"bytes_out":4096,"client_missed_bytes":0,"dropped_bytes":0,"flag_transitions":1,"#
                + #""notifications":3,"#
                + #""quarantine_reason":null,"quarantines":0,"ring_full_events":0,"#
                + #""sink_state":"waiting_for_client","throttled_periods":0}"#
        )
    }

    @Test func roundTripsThroughJSON() throws {
        var counters = ConsoleCounters()
        counters.bytesOut = .max
        counters.bytesIn = 7
        counters.ringFullEvents = 2
        counters.throttledPeriods = 3
        counters.droppedBytes = 4
        counters.quarantines = 1
        counters.quarantineReason = "invalid out ring indices: prod=5000 cons=0 size=2048"
        counters.sinkState = .closed
        let data = try JSONEncoder().encode(counters)
        #expect(try JSONDecoder().decode(ConsoleCounters.self, from: data) == counters)
    }

    @Test func decodingToleratesMissingKeys() throws {
        let decoded = try JSONDecoder().decode(ConsoleCounters.self, from: Data(#"{"bytes_out":5}"#.utf8))
        var expected = ConsoleCounters()
        expected.bytesOut = 5
        #expect(decoded == expected)
    }

    @Test(arguments: SinkState.allCases)
    func sinkStateNames(state: SinkState) throws {
        let names: [SinkState: String] = [
            .none: "none", .waitingForClient: "waiting_for_client", .connected: "connected", .closed: "closed",
        ]
        #expect(String(decoding: try JSONEncoder().encode([state]), as: UTF8.self) == "[\"\(names[state]!)\"]")
    }

    @Test func totalSumsNumbersAndSaturates() {
        var a = ConsoleCounters()
        a.bytesOut = 10
        a.notifications = .max - 1
        a.sinkState = .connected
        a.quarantineReason = "x"
        a.quarantines = 1
        var b = ConsoleCounters()
        b.bytesOut = 5
        b.bytesIn = 2
        b.ringFullEvents = 1
        b.throttledPeriods = 4
        b.droppedBytes = 9
        b.flagTransitions = 2
        b.notifications = 5
        let total = ConsoleCounters.total(of: [a, b])
        #expect(total.bytesOut == 15)
        #expect(total.bytesIn == 2)
        #expect(total.ringFullEvents == 1)
        #expect(total.throttledPeriods == 4)
        #expect(total.droppedBytes == 9)
        #expect(total.flagTransitions == 2)
        #expect(total.quarantines == 1)
        #expect(total.notifications == .max)
        #expect(total.sinkState == .none)
        #expect(total.quarantineReason == nil)

        var merged = a
        merged.add(b)
        #expect(merged.sinkState == .connected && merged.quarantineReason == "x" && merged.bytesOut == 15)
        #expect(ConsoleCounters.total(of: []) == ConsoleCounters())
    }
}
