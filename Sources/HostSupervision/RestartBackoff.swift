//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// When the supervisor tries a dead daemon again. A daemon that ran a while
/// before dying is restarted at once; one that keeps dying young, or whose
/// restart fails, waits twice as long each time (half a second first, at most
/// 30 s), so a crash loop neither spins nor gives up: the supervisor keeps trying
/// for as long as the stack is up.
public struct RestartBackoff: Hashable, Sendable {
    /// The wait after the first failure.
    public var initial: Duration = .milliseconds(500)
    /// The longest wait.
    public var maximum: Duration = .seconds(30)
    /// A daemon that ran this long before it died counts as healthy.
    public var healthyAfter: Duration = .seconds(10)

    /// Failures in a row (a daemon dying young, or a restart that failed).
    public private(set) var consecutiveFailures = 0

    public init() {}

    /// The daemon died after running for `ranFor`. Returns how long to wait
    /// before restarting it.
    public mutating func died(after ranFor: Duration) -> Duration {
        consecutiveFailures = ranFor >= healthyAfter ? 0 : consecutiveFailures + 1
        return delay
    }

    /// A restart failed (the daemon would not start). Returns how long to wait.
    public mutating func restartFailed() -> Duration {
        consecutiveFailures += 1
        return delay
    }

    /// The wait the current run of failures calls for: none after none.
    public var delay: Duration {
        guard consecutiveFailures > 0 else { return .zero }
        var wait = initial
        for _ in 1..<consecutiveFailures where wait < maximum { wait *= 2 }
        return min(wait, maximum)
    }
}
