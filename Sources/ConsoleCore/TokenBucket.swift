//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// A per-console byte rate limiter: `rate` bytes per second refill a bucket that
/// holds at most `burst` bytes.
///
/// consoled takes tokens for every byte it reads from a guest's `out` ring, so one
/// noisy guest cannot monopolise the daemon while others wait. Time is a parameter
/// (`now`, monotonic nanoseconds); the bucket never reads a clock.
///
/// ## Invariants
///
/// 1. `0 ≤ tokens ≤ burst` at all times.
/// 2. Over any interval the bytes granted never exceed `burst + rate · t / 10⁹`,
///    where `t` is the elapsed nanoseconds since the bucket was created (it starts
///    full).
/// 3. No arithmetic traps, whatever `rate`, `burst` and `now` are: products are
///    computed in 128 bits and results saturate.
/// 4. Fractions of a token are carried forward (`remainder`), so refilling in many
///    small steps yields exactly as many tokens as one big step.
///
/// ## Worked example
///
/// rate 1000 B/s, burst 500 B, created at t = 0 (full: 500 tokens).
///
/// | call                                  | result         | tokens after | throttled periods |
/// |---------------------------------------|----------------|--------------|-------------------|
/// | `take(800, now: 0)`                   | 500 (partial)  | 0            | 1 (period begins) |
/// | `timeUntilAvailable(300, now: 0)`     | 300 000 000 ns | 0            | 1                 |
/// | `take(300, now: 300_000_000)`         | 300            | 0            | 1 (still in it)   |
/// | `take(10, now: 400_000_000)`          | 10             | 90           | 1 (period ends)   |
/// | `take(500, now: 400_000_000)`         | 90 (partial)   | 0            | 2 (a new one)     |
///
/// ## Throttled periods
///
/// A period begins when a request is denied or only partly granted. It ends when
/// demand falls below supply again: a later request is granted in full *and*
/// leaves tokens in the bucket, or a full bucket goes unused for as long as it
/// takes to refill a whole burst (`burst / rate`; the consumer went idle). A
/// consumer that keeps asking for more than the rate delivers, and waits as told
/// by ``timeUntilAvailable(_:now:)``, therefore stays in one period however many
/// times it waits, even when its requests exceed the burst.
public struct TokenBucket: Sendable, Equatable {
    /// Rate and burst of a bucket.
    public struct Configuration: Sendable, Hashable {
        /// Refill rate in bytes per second. 0 means no refill: once the initial
        /// `burst` is spent, nothing more is granted.
        public var rate: UInt64
        /// Bucket size in bytes: the most that can be granted at once after idling.
        public var burst: UInt64

        public init(rate: UInt64, burst: UInt64) {
            self.rate = rate
            self.burst = burst
        }

        /// consoled's default: 256 MiB/s with a 1 MiB burst.
        ///
        /// The issue requires that the default never throttles a single channel
        /// below 100 MB/s; 256 MiB/s is ~268 MB/s, so one busy console runs at full
        /// ring speed on ordinary hardware while a host with dozens of chatty guests
        /// still bounds each one. 1 MiB of burst is ~4 ms at that rate: enough to
        /// absorb a boot-time flood without a wake-up per ring's worth of data.
        public static let `default` = Configuration(rate: 256 << 20, burst: 1 << 20)

        /// No limit in practice: at `UInt64.max` bytes per second a single
        /// nanosecond refills more than any ring holds.
        public static let unlimited = Configuration(rate: .max, burst: .max)
    }

    /// Nanoseconds per second: the scale between `rate` and `now`.
    @usableFromInline static let nanosPerSecond: UInt64 = 1_000_000_000

    /// The configuration this bucket was created with.
    public let configuration: Configuration
    /// Whole tokens (bytes) available as of the last call that took `now`.
    public private(set) var tokens: UInt64
    /// `rate · elapsed` left over after the last whole token, in byte·ns/10⁹ units;
    /// always `< 10⁹`. Carrying it avoids losing fractions on frequent small refills.
    private var remainder: UInt64 = 0
    /// The `now` of the last refill; time never runs backwards for the bucket.
    private var lastRefill: UInt64
    /// True from a denied or partial grant until the period ends (see the type's doc).
    public private(set) var isThrottled = false
    /// How many throttled periods have begun.
    public private(set) var throttledPeriods: UInt64 = 0
    /// Whole tokens discarded at a full bucket since the last grant: how long supply
    /// has gone unused, in bytes.
    private var unusedSupply: UInt64 = 0

    /// A full bucket at `now`.
    public init(_ configuration: Configuration = .default, now: UInt64) {
        self.configuration = configuration
        self.tokens = configuration.burst
        self.lastRefill = now
    }

    /// Grants up to `n` bytes at `now`; may grant fewer (down to 0). A non-positive
    /// `n` grants 0 and changes nothing but the refill.
    public mutating func take(_ n: Int, now: UInt64) -> Int {
        refill(now: now)
        guard n > 0 else { return 0 }
        let wanted = UInt64(n)  // n > 0, so exact
        let granted = min(wanted, tokens)
        tokens -= granted
        if granted > 0 { unusedSupply = 0 }
        if granted < wanted {
            if !isThrottled {
                isThrottled = true
                throttledPeriods = throttledPeriods.addingSaturated(1)
            }
        } else if tokens > 0 {
            isThrottled = false
        }
        return Int(granted)  // ≤ n, so it fits
    }

    /// Gives back tokens that were taken but not used (for example a client accepted
    /// fewer bytes than were granted). The bucket never exceeds `burst`.
    public mutating func refund(_ n: Int) {
        guard n > 0 else { return }
        let room = configuration.burst - tokens
        tokens += min(UInt64(n), room)
    }

    /// Nanoseconds from `now` until `take(n, now:)` would grant `min(n, burst)` in
    /// full; 0 if it already would.
    ///
    /// Requests are clamped to `burst` because the bucket can never hold more.
    /// Returns `UInt64.max` when the request can never be met: `rate` 0 with too few
    /// tokens, `burst` 0, or a wait beyond 2^64 ns.
    ///
    /// Example: rate 1000 B/s, 0 tokens, remainder 0 → `timeUntilAvailable(3)` is
    /// 3 000 000 ns; with `rate` 3 B/s and 1 token, `timeUntilAvailable(2)` is
    /// ⌈10⁹ / 3⌉ = 333 333 334 ns.
    public func timeUntilAvailable(_ n: Int, now: UInt64) -> UInt64 {
        guard n > 0 else { return 0 }
        let burst = configuration.burst
        let wanted = min(UInt64(n), burst)
        guard wanted > 0 else { return .max }
        let (have, carried, _) = refilled(at: now)
        if have >= wanted { return 0 }
        let rate = configuration.rate
        guard rate > 0 else { return .max }
        // Smallest t with rate·t + carried ≥ deficit·10⁹, in 128-bit arithmetic.
        let deficit = wanted - have
        var (high, low) = deficit.multipliedFullWidth(by: Self.nanosPerSecond)
        // deficit ≥ 1, so deficit·10⁹ ≥ 10⁹ > carried: the subtraction cannot go negative.
        let (difference, borrow) = low.subtractingReportingOverflow(carried)
        low = difference
        if borrow { high -= 1 }
        guard high < rate else { return .max }  // the quotient would not fit in 64 bits
        let (quotient, leftover) = rate.dividingFullWidth((high, low))
        return leftover == 0 ? quotient : quotient.addingSaturated(1)
    }

    /// Tokens that would be available at `now`, without taking any.
    public func available(now: UInt64) -> UInt64 { refilled(at: now).tokens }

    private mutating func refill(now: UInt64) {
        let (newTokens, newRemainder, discarded) = refilled(at: now)
        tokens = newTokens
        remainder = newRemainder
        if now > lastRefill { lastRefill = now }
        if discarded > 0 {
            unusedSupply = unusedSupply.addingSaturated(discarded)
            // A whole burst's worth of supply went unused: demand has fallen below
            // supply, so any throttled period is over.
            if unusedSupply >= max(1, configuration.burst) { isThrottled = false }
        }
    }

    /// The bucket's contents at `now`, and how many whole tokens the refill had to
    /// discard because the bucket was full. A full bucket discards fractions too.
    private func refilled(at now: UInt64) -> (tokens: UInt64, remainder: UInt64, discarded: UInt64) {
        let burst = configuration.burst
        guard now > lastRefill else { return (tokens, remainder, 0) }
        let elapsed = now - lastRefill
        var (high, low) = configuration.rate.multipliedFullWidth(by: elapsed)
        let (sum, carry) = low.addingReportingOverflow(remainder)
        low = sum
        // (2^64 − 1)² has a high word of 2^64 − 2, so one carry cannot overflow it.
        if carry { high += 1 }
        let room = burst - tokens
        // A quotient of 2^64 or more means "more than any burst": the bucket is full.
        guard high < Self.nanosPerSecond else { return (burst, 0, .max - room) }
        let (whole, fraction) = Self.nanosPerSecond.dividingFullWidth((high, low))
        if whole >= room { return (burst, 0, whole - room) }
        return (tokens + whole, fraction, 0)
    }
}

extension UInt64 {
    /// `self + other`, or `UInt64.max` if that overflows: counters and deadlines
    /// saturate rather than trap.
    @inlinable
    func addingSaturated(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}
