//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

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
