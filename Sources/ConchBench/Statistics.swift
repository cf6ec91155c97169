//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemExtras

/// Where a baseline's two processes run: each on its own CPU, as a guest's vCPU
/// and dom0's are on a Xen host. Left to the scheduler, the two land on one CPU
/// in some runs (hand-offs without a cross-CPU wake-up: this machine's raw
/// eventfd round trip is then ~5 µs and the eventfd ring ~350 MB/s) and on two
/// in others (~35 µs, ~50 MB/s), and a baseline that flips between the two modes
/// steers nobody. With fewer than two CPUs, nothing is pinned.
struct BaselinePlacement {
    let mine: Int?
    let peer: Int?

    static func crossCore() -> BaselinePlacement {
        guard let cpus = try? CPUAffinity.current(), cpus.count >= 2 else { return .init(mine: nil, peer: nil) }
        return .init(mine: cpus[0], peer: cpus[1])
    }

    /// Spawns the peer (in `body`) from this thread pinned to the peer's CPU, so
    /// the child inherits that CPU.
    func spawningPeer<T>(_ body: () throws -> T) throws -> T {
        guard let peer else { return try body() }
        return try CPUAffinity.withPinned(to: [peer], body)
    }

    /// Runs this side of the measurement on its own CPU.
    func measuring<T>(_ body: () throws -> T) throws -> T {
        guard let mine else { return try body() }
        return try CPUAffinity.withPinned(to: [mine], body)
    }
}

/// Latency samples in microseconds, and the figures the benchmarks report.
public struct LatencySamples: Sendable {
    public private(set) var microseconds: [Double] = []

    public init() {}

    public mutating func record(_ duration: Duration) {
        microseconds.append(duration.microseconds)
    }

    /// The `fraction` quantile (0.5 = median), nearest-rank.
    public func quantile(_ fraction: Double) -> Double {
        guard !microseconds.isEmpty else { return 0 }
        let sorted = microseconds.sorted()
        let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }

    public var p50: Double { quantile(0.5) }
    public var p99: Double { quantile(0.99) }
}

extension Duration {
    /// The duration in (fractional) microseconds.
    public var microseconds: Double {
        Double(components.seconds) * 1e6 + Double(components.attoseconds) / 1e12
    }

    public var seconds: Double { microseconds / 1e6 }
}

/// Rounds for display: 3 significant digits is plenty for a benchmark figure.
public func rounded(_ value: Double, places: Int = 1) -> Double {
    var scale = 1.0
    for _ in 0..<places { scale *= 10 }
    return (value * scale).rounded() / scale
}

/// True when this binary was built without optimisation; benchmark figures from
/// such a build say little about Conch.
public var isDebugBuild: Bool {
    #if DEBUG
    true
    #else
    false
    #endif
}

/// A figure over the pairs of an interleaved measurement: its median and its range.
public struct Spread: Codable, Sendable, Equatable {
    public var median: Double
    public var min: Double
    public var max: Double

    /// The spread of `values` (at least one), rounded to `places` decimals.
    public init(_ values: [Double], places: Int = 1) {
        precondition(!values.isEmpty, "a spread of no values")
        let sorted = values.sorted()
        let middle = sorted.count / 2
        let median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
        self.median = rounded(median, places: places)
        self.min = rounded(sorted.first!, places: places)
        self.max = rounded(sorted.last!, places: places)
    }

    /// "median (min–max)", for tables.
    public var text: String { "\(median) (\(min)–\(max))" }
}

/// A subject and its baseline measured alternately — baseline, subject, baseline,
/// subject, … — so that each pair sees the same machine.
///
/// Why: on this project's two-vCPU machines a wake-up that crosses to the other,
/// idle vCPU costs ~20 µs (the halted vCPU has to be kicked), one on the same vCPU
/// ~2 µs, and where the scheduler places two processes changes from one run to
/// the next. A baseline measured once and a subject measured later can land on
/// different placements and their ratio swings several-fold; the ratio of each
/// pair, and the median of those ratios, does not.
public struct InterleavedPairs: Sendable {
    public private(set) var baselines: [Double] = []
    public private(set) var subjects: [Double] = []

    public init() {}

    public var count: Int { baselines.count }

    public mutating func record(baseline: Double, subject: Double) {
        baselines.append(baseline)
        subjects.append(subject)
    }

    public func baseline(places: Int = 1) -> Spread { Spread(baselines, places: places) }
    public func subject(places: Int = 1) -> Spread { Spread(subjects, places: places) }

    /// subject ÷ baseline per pair: the median and range of those ratios.
    public func ratio(places: Int = 2) -> Spread {
        Spread(zip(subjects, baselines).map { $0 / Swift.max($1, 1e-9) }, places: places)
    }
}
