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

private let second: UInt64 = 1_000_000_000

@Suite("TokenBucket")
struct TokenBucketTests {
    /// The worked example in the type's documentation, step by step.
    @Test func documentedWorkedExample() {
        var bucket = TokenBucket(.init(rate: 1000, burst: 500), now: 0)
        #expect(bucket.take(800, now: 0) == 500)
        #expect(bucket.tokens == 0)
        #expect(bucket.throttledPeriods == 1)
        #expect(bucket.isThrottled)
        #expect(bucket.timeUntilAvailable(300, now: 0) == 300_000_000)
        #expect(bucket.take(300, now: 300_000_000) == 300)
        #expect(bucket.tokens == 0)
        #expect(bucket.isThrottled, "a full grant that empties the bucket does not end the period")
        #expect(bucket.take(10, now: 400_000_000) == 10)
        #expect(bucket.tokens == 90)
        #expect(!bucket.isThrottled)
        #expect(bucket.take(500, now: 400_000_000) == 90)
        #expect(bucket.throttledPeriods == 2)
    }

    @Test func timeUntilAvailableRoundsUp() {
        var bucket = TokenBucket(.init(rate: 3, burst: 10), now: 0)
        #expect(bucket.take(9, now: 0) == 9)
        #expect(bucket.tokens == 1)
        #expect(bucket.timeUntilAvailable(2, now: 0) == 333_333_334)
        #expect(bucket.available(now: 333_333_333) == 1)
        #expect(bucket.available(now: 333_333_334) == 2)
        #expect(bucket.timeUntilAvailable(1, now: 0) == 0)
        #expect(bucket.timeUntilAvailable(0, now: 0) == 0)
        #expect(bucket.timeUntilAvailable(-5, now: 0) == 0)
    }

    @Test func requestsBeyondBurstAreClampedToBurst() {
        var bucket = TokenBucket(.init(rate: 1000, burst: 100), now: 0)
        _ = bucket.take(100, now: 0)
        // 5000 bytes can never be in the bucket at once; waiting for 100 is the best.
        #expect(bucket.timeUntilAvailable(5000, now: 0) == 100_000_000)
        #expect(bucket.take(5000, now: 100_000_000) == 100)
    }

    /// Fractions of tokens are carried: refilling a 3 B/s bucket in 1000 uneven steps
    /// over one second gives exactly 3 tokens, as one step would.
    @Test func fractionsAreCarriedAcrossSmallRefills() {
        var stepped = TokenBucket(.init(rate: 3, burst: 100), now: 0)
        var single = stepped
        _ = stepped.take(100, now: 0)
        _ = single.take(100, now: 0)
        var now: UInt64 = 0
        var granted = 0
        while now < second {
            now = min(second, now + 999_983)
            granted += stepped.take(1000, now: now)
        }
        #expect(granted == 3)
        #expect(single.take(1000, now: second) == 3)
    }

    @Test func noRefillWhenTimeGoesBackwards() {
        var bucket = TokenBucket(.init(rate: 1000, burst: 1000), now: 5 * second)
        #expect(bucket.take(1000, now: 5 * second) == 1000)
        #expect(bucket.take(1000, now: 1 * second) == 0)
        #expect(bucket.take(1000, now: 5 * second + 1_000_000) == 1)
    }

    @Test func zeroRateAndZeroBurstNeverTrapNorSpin() {
        var noRefill = TokenBucket(.init(rate: 0, burst: 10), now: 0)
        #expect(noRefill.take(15, now: 0) == 10)
        #expect(noRefill.take(1, now: .max) == 0)
        #expect(noRefill.timeUntilAvailable(1, now: .max) == .max)

        var empty = TokenBucket(.init(rate: 1_000_000, burst: 0), now: 0)
        #expect(empty.take(1, now: second) == 0)
        #expect(empty.timeUntilAvailable(1, now: second) == .max, "0 would make the caller spin")
    }

    @Test func extremeValuesSaturateInsteadOfTrapping() {
        var unlimited = TokenBucket(.unlimited, now: 0)
        #expect(unlimited.take(.max, now: 0) == .max)
        #expect(unlimited.take(.max, now: 1) == .max)
        #expect(unlimited.take(.max, now: .max) == .max)
        #expect(unlimited.timeUntilAvailable(.max, now: .max) == 0)

        var slow = TokenBucket(.init(rate: 1, burst: .max), now: 0)
        #expect(slow.take(.max, now: 0) == .max)
        #expect(slow.take(.max, now: 0) == .max)
        #expect(slow.tokens == 1)
        #expect(slow.timeUntilAvailable(.max, now: 0) == .max, "2^63 s does not fit in 64-bit nanoseconds")
        // (2^64 − 1) ns at 1 B/s is 18 446 744 073 whole bytes, plus the one left.
        #expect(slow.take(.max, now: .max) == 18_446_744_074)

        var fast = TokenBucket(.init(rate: .max, burst: 1 << 20), now: 0)
        _ = fast.take(1 << 20, now: 0)
        #expect(fast.timeUntilAvailable(1 << 20, now: 0) == 1)
        #expect(fast.take(1 << 20, now: .max) == 1 << 20)
    }

    @Test func refundNeverOverfillsTheBucket() {
        var bucket = TokenBucket(.init(rate: 0, burst: 100), now: 0)
        #expect(bucket.take(60, now: 0) == 60)
        bucket.refund(1000)
        #expect(bucket.tokens == 100)
        bucket.refund(-3)
        #expect(bucket.tokens == 100)
    }

    @Test func idlingForAWholeBurstEndsAThrottledPeriod() {
        var bucket = TokenBucket(.init(rate: 100, burst: 100), now: 0)
        #expect(bucket.take(200, now: 0) == 100)
        #expect(bucket.isThrottled)
        _ = bucket.take(0, now: second)  // exactly full: nothing unused yet
        #expect(bucket.isThrottled)
        _ = bucket.take(0, now: second + second / 2)  // 50 unused
        #expect(bucket.isThrottled)
        _ = bucket.take(0, now: 2 * second)  // 100 unused: a whole burst
        #expect(!bucket.isThrottled)
        #expect(bucket.take(200, now: 2 * second) == 100)
        #expect(bucket.throttledPeriods == 2)
    }

    /// Requests larger than the burst, each waited for as told: still one period.
    @Test func sustainedOverloadBeyondTheBurstIsOnePeriod() {
        var bucket = TokenBucket(.init(rate: 1000, burst: 100), now: 0)
        var now: UInt64 = 0
        for _ in 0..<50 {
            let got = bucket.take(300, now: now)
            #expect(got == 100)
            now += bucket.timeUntilAvailable(300 - got, now: now)
        }
        #expect(bucket.throttledPeriods == 1)
    }

    /// A consumer that always wants more than the rate gives, and waits exactly as
    /// told (as the pump does), stays in one throttled period: its requests fit in the
    /// burst, so the bucket is never seen full.
    @Test func sustainedOverloadIsOnePeriod() {
        var bucket = TokenBucket(.init(rate: 10_000, burst: 2_000), now: 0)
        var now: UInt64 = 0
        var moved = 0
        for _ in 0..<100 {
            let got = bucket.take(1600, now: now)
            moved += got
            if got < 1600 { now += bucket.timeUntilAvailable(1600 - got, now: now) }
        }
        #expect(moved > 1600 * 10)
        #expect(bucket.throttledPeriods == 1)
    }

    /// The requirement: the default must not throttle a single channel below
    /// 100 MB/s. A consumer moving 2 KiB ring-fulls, waiting whenever told, for one
    /// second of injected time.
    @Test func defaultSustainsMoreThan100MBPerSecond() {
        var bucket = TokenBucket(.default, now: 0)
        var now: UInt64 = 0
        var moved: UInt64 = 0
        while now < second {
            let granted = bucket.take(2048, now: now)
            moved += UInt64(granted)
            if granted < 2048 { now += max(1, bucket.timeUntilAvailable(2048 - granted, now: now)) }
        }
        #expect(moved >= 100_000_000)
        #expect(TokenBucket.Configuration.default.rate >= 100_000_000)
        // And with the burst spent, the sustained rate alone clears the bar.
        #expect(moved - TokenBucket.Configuration.default.burst >= 100_000_000)
    }

    /// Invariant 2: granted bytes never exceed burst + rate·t.
    @Test func neverGrantsMoreThanBurstPlusRateTimesTime() async {
        await propertyCheck(
            count: 300,
            input: Gen.uint64(in: 0...5_000_000_000),
            Gen.uint64(in: 0...100_000),
            Gen.uint64(in: 0...2_000_000_000).array(of: 1...50),
            Gen.int(in: 0...300_000).array(of: 50)
        ) { rate, burst, steps, requests in
            var bucket = TokenBucket(.init(rate: rate, burst: burst), now: 7)
            var now: UInt64 = 7
            var granted: UInt128 = 0
            for (step, request) in zip(steps, requests) {
                now += step
                let got = bucket.take(request, now: now)
                #expect(got >= 0 && got <= request)
                #expect(bucket.tokens <= burst)
                granted += UInt128(got)
                let bound = UInt128(burst) + UInt128(rate) * UInt128(now - 7) / UInt128(second)
                #expect(granted <= bound)
            }
        }
    }

    /// Waiting exactly `timeUntilAvailable(n)` is enough, and one nanosecond less is not.
    @Test func timeUntilAvailableIsExactAndMinimal() async {
        await propertyCheck(
            count: 300,
            input: Gen.uint64(in: 1...10_000_000_000),
            Gen.uint64(in: 1...1_000_000),
            Gen.int(in: 0...2_000_000),
            Gen.int(in: 1...2_000_000)
        ) { rate, burst, first, request in
            var bucket = TokenBucket(.init(rate: rate, burst: burst), now: 0)
            _ = bucket.take(first, now: 0)
            let wait = bucket.timeUntilAvailable(request, now: 1000)
            let target = min(UInt64(request), burst)
            #expect(bucket.available(now: 1000 + wait) >= target)
            if wait > 0 { #expect(bucket.available(now: 1000 + wait - 1) < target) }
            #expect(bucket.take(request, now: 1000 + wait) == Int(target))
        }
    }
}
