//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// The four indices and the `connection` byte of a console page, as consoled read
/// them at one moment. Everything here is guest-writable memory: untrusted.
public struct RingSnapshot: Sendable, Hashable {
    /// `out_prod`, written by the guest.
    public var outProd: UInt32
    /// `out_cons`, written by the backend (but the guest can scribble on it).
    public var outCons: UInt32
    /// `in_prod`, written by the backend.
    public var inProd: UInt32
    /// `in_cons`, written by the guest.
    public var inCons: UInt32
    /// The `connection` byte, or `nil` when the backend does not manage the flag
    /// (legacy mode), in which case flag rules are skipped.
    public var connection: UInt8?

    public init(outProd: UInt32, outCons: UInt32, inProd: UInt32, inCons: UInt32, connection: UInt8? = nil) {
        self.outProd = outProd
        self.outCons = outCons
        self.inProd = inProd
        self.inCons = inCons
        self.connection = connection
    }
}

/// Decides when a guest's console ring is misbehaving badly enough to stop serving
/// it ("quarantine"), so that one hostile or broken guest cannot wedge consoled or
/// make it spin, while every other console keeps working.
///
/// consoled feeds it every snapshot of the indices it reads (``inspect(_:now:)``),
/// every event-channel notification (``notification(now:)``), every byte it moves
/// (``progress(now:)``) and every flag value it writes
/// (``backendWroteFlag(_:)``). Quarantine is sticky: once decided, every later call
/// returns the same verdict.
///
/// ## Rules (checked in this order)
///
/// 1. **Invalid indices**: `prod − cons > size` (32-bit wrapping) for either ring.
///    `out` prod=5000 cons=0 → "invalid out ring indices: prod=5000 cons=0 size=2048".
/// 2. **Guest index jump**: a guest-written index (`out_prod`, `in_cons`) moved by
///    2^31 or more since the last snapshot. In wrapping arithmetic that is also any
///    *backwards* move: out_prod 100 → 97 is a move of 2^32 − 3. A producer that
///    retracts published bytes, or leaps half the index space, is not a ring.
///    Legitimate forward moves, even of many ring lengths between snapshots, are
///    far below 2^31.
/// 3. **Flag rewrites**: the observed `connection` byte differs from what the
///    backend last wrote. Up to `maxFlagRewrites` (default 3) such rewrites are
///    tolerated and answered with ``Verdict/restoreFlag(_:)``; the next one
///    quarantines. Why tolerate any: a frontend that re-initialises its page (Linux
///    zeroes secondary console pages on resume) rewrites the byte once, and a
///    toolstack racing with consoled at build time may too. A guest that keeps
///    flipping it is misbehaving. Each rewrite is counted once per backend write,
///    however often the same mismatch is observed.
/// 4. **Event storm**: more than `stormNotifications` (default 10 000)
///    notifications within `stormWindow` (default 1 s) with no progress in between.
///    Progress is any byte moved by the backend or any change of a guest-written
///    index. A busy but honest guest makes progress with nearly every event.
///
/// ## Worked example (defaults)
///
/// ```
/// backendWroteFlag(.connected)
/// inspect(prod 10 cons 0, flag 0)        → .ok
/// inspect(prod 10 cons 0, flag 1)        → .restoreFlag(.connected)   rewrite 1
/// inspect(prod 10 cons 0, flag 1)        → .ok                        same mismatch, not recounted
/// backendWroteFlag(.connected) … ×3 more rewrites → rewrite 4 > 3 → .quarantine("guest rewrote …")
/// ```
public struct RingGuard: Sendable {
    /// Tunables; the defaults are documented on each.
    public struct Thresholds: Sendable, Hashable {
        /// Flag rewrites tolerated before quarantine. Default 3 (see rule 3).
        public var maxFlagRewrites: Int
        /// Notifications without progress tolerated within one window. Default 10 000:
        /// two orders of magnitude above what the 2 KiB ring can justify per second
        /// for a guest that is actually writing, yet cheap for consoled to absorb.
        public var stormNotifications: Int
        /// The storm window in nanoseconds. Default 1 s.
        public var stormWindow: UInt64

        public init(maxFlagRewrites: Int = 3, stormNotifications: Int = 10_000, stormWindow: UInt64 = 1_000_000_000) {
            self.maxFlagRewrites = maxFlagRewrites
            self.stormNotifications = stormNotifications
            self.stormWindow = stormWindow
        }

        public static let `default` = Thresholds()
    }

    /// What consoled should do after an observation.
    public enum Verdict: Sendable, Hashable {
        /// Nothing wrong.
        case ok
        /// The guest rewrote the flag; write this value back (tolerated so far).
        case restoreFlag(ConsoleConnection)
        /// Stop serving this console: unbind its event channel, log `reason`.
        case quarantine(reason: String)
    }

    public let thresholds: Thresholds
    public let outSize: UInt32
    public let inSize: UInt32

    /// Why the console is quarantined; `nil` while it is not.
    public private(set) var quarantineReason: String?
    /// Flag rewrites by the guest seen so far.
    public private(set) var flagRewrites = 0
    /// Changes of the flag byte, by the backend or the guest.
    public private(set) var flagTransitions: UInt64 = 0

    private var lastOutProd: UInt32?
    private var lastInCons: UInt32?
    private var lastFlag: UInt8?
    private var backendFlag: ConsoleConnection?
    /// Set once the current mismatch has been counted; cleared by the next backend write.
    private var mismatchCounted = false
    private var windowStart: UInt64?
    private var quietNotifications = 0

    /// A guard for a ring pair of the given sizes (default: the console page's).
    /// Sizes are `UInt32` because indices are; 0-sized rings accept only prod = cons.
    public init(
        thresholds: Thresholds = .default,
        outSize: UInt32 = UInt32(ConsoleInterface.outSize),
        inSize: UInt32 = UInt32(ConsoleInterface.inSize)
    ) {
        self.thresholds = thresholds
        self.outSize = outSize
        self.inSize = inSize
    }

    public var isQuarantined: Bool { quarantineReason != nil }

    /// Records a value consoled wrote to the `connection` byte; later snapshots are
    /// compared with it.
    public mutating func backendWroteFlag(_ value: ConsoleConnection) {
        if let lastFlag, lastFlag != value.rawValue { flagTransitions = flagTransitions.addingSaturated(1) }
        lastFlag = value.rawValue
        backendFlag = value
        mismatchCounted = false
    }

    /// Checks one snapshot of the page (rules 1–3) and notes guest progress.
    public mutating func inspect(_ snapshot: RingSnapshot, now: UInt64) -> Verdict {
        if let quarantineReason { return .quarantine(reason: quarantineReason) }
        if let reason = Self.indexProblem(ring: "out", prod: snapshot.outProd, cons: snapshot.outCons, size: outSize)
            ?? Self.indexProblem(ring: "in", prod: snapshot.inProd, cons: snapshot.inCons, size: inSize)
            ?? Self.jump(of: "out ring producer", from: lastOutProd, to: snapshot.outProd)
            ?? Self.jump(of: "in ring consumer", from: lastInCons, to: snapshot.inCons)
        {
            return quarantine(reason)
        }
        if snapshot.outProd != lastOutProd || snapshot.inCons != lastInCons { progress(now: now) }
        lastOutProd = snapshot.outProd
        lastInCons = snapshot.inCons
        return checkFlag(snapshot.connection)
    }

    /// Counts one event-channel notification (rule 4).
    public mutating func notification(now: UInt64) -> Verdict {
        if let quarantineReason { return .quarantine(reason: quarantineReason) }
        if let start = windowStart, now >= start, now - start < thresholds.stormWindow {
            quietNotifications += 1
        } else {
            windowStart = now
            quietNotifications = 1
        }
        if quietNotifications > thresholds.stormNotifications {
            let milliseconds = thresholds.stormWindow / 1_000_000
            return quarantine(
                "event storm: more than \(thresholds.stormNotifications) notifications within \(milliseconds) ms "
                    + "without progress"
            )
        }
        return .ok
    }

    /// Bytes moved: the notifications so far were justified.
    public mutating func progress(now: UInt64) {
        windowStart = now
        quietNotifications = 0
    }

    private mutating func checkFlag(_ observed: UInt8?) -> Verdict {
        guard let observed else { return .ok }
        if let lastFlag, lastFlag != observed { flagTransitions = flagTransitions.addingSaturated(1) }
        lastFlag = observed
        guard let backendFlag, observed != backendFlag.rawValue else { return .ok }
        if mismatchCounted { return .ok }
        mismatchCounted = true
        flagRewrites += 1
        if flagRewrites > thresholds.maxFlagRewrites {
            return quarantine(
                "guest rewrote the connection flag \(flagRewrites) times (saw \(observed), backend wrote "
                    + "\(backendFlag.rawValue))"
            )
        }
        return .restoreFlag(backendFlag)
    }

    /// Quarantines for a reason the shell found itself (for example an index check
    /// failing between a peek and a consume because the guest moved an index).
    public mutating func quarantine(because reason: String) -> Verdict { quarantine(reason) }

    private mutating func quarantine(_ reason: String) -> Verdict {
        quarantineReason = reason
        return .quarantine(reason: reason)
    }

    private static func indexProblem(ring: String, prod: UInt32, cons: UInt32, size: UInt32) -> String? {
        prod &- cons > size ? "invalid \(ring) ring indices: prod=\(prod) cons=\(cons) size=\(size)" : nil
    }

    private static func jump(of index: String, from old: UInt32?, to new: UInt32) -> String? {
        guard let old else { return nil }
        let delta = new &- old  // wrapping: backwards moves become ≥ 2^31
        guard delta >= 1 << 31 else { return nil }
        return "\(index) moved from \(old) to \(new) (backwards, or a jump of 2^31 or more)"
    }
}
