//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConchBench
import SystemExtras
import Testing

/// The arithmetic every benchmark's ratio goes through, and the pinning its
/// baselines rely on.
@Suite struct InterleavedPairsTests {
    @Test func theRatioIsTheMedianOfThePairwiseRatiosNotTheRatioOfMedians() {
        var pairs = InterleavedPairs()
        // A machine that flips between a fast and a slow mode: each pair sees one.
        pairs.record(baseline: 50, subject: 60)
        pairs.record(baseline: 350, subject: 420)
        pairs.record(baseline: 50, subject: 55)
        pairs.record(baseline: 350, subject: 385)
        pairs.record(baseline: 50, subject: 65)
        let ratio = pairs.ratio()
        #expect(ratio.median == 1.2)
        #expect(ratio.min == 1.1 && ratio.max == 1.3)
        // The ratio of the medians (65 / 50) would say 1.3 here, and 385/350 in a run
        // with one more slow pair: the pairwise median does not care which mode dominated.
        #expect(pairs.baseline().median == 50 && pairs.subject().median == 65)
        #expect(pairs.count == 5)
    }

    @Test func aSpreadOfAnEvenCountTakesTheMiddleTwo() {
        let spread = Spread([4, 1, 3, 2], places: 1)
        #expect(spread.median == 2.5 && spread.min == 1 && spread.max == 4)
        #expect(spread.text == "2.5 (1.0–4.0)")
    }

    @Test func theAllTableShowsASpreadAsMedianAndRange() {
        let table = AllBenchmarks.table([
            ("console", ["ratio": ["median": 1.19, "min": 1.06, "max": 1.35] as [String: Any], "pairs": 5])
        ])
        #expect(table.contains("ratio") && table.contains("1.19 (1.06–1.35)"), "\(table)")
        #expect(table.contains("pairs") && table.contains(" 5"))
    }

    @Test func pinningAThreadPlacesItAndRestores() throws {
        let before = try CPUAffinity.current()
        try #require(!before.isEmpty)
        let target = before.last!
        let inside = try CPUAffinity.withPinned(to: [target]) { try CPUAffinity.current() }
        #expect(inside == [target])
        #expect(try CPUAffinity.current() == before)
        #expect(throws: (any Error).self) { try CPUAffinity.pin(to: [-1]) }
    }
}
