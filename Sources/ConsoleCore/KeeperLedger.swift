//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// The arithmetic that lets a socket channel survive consoled's death: the keeper
/// counts what crossed between it and consoled, and the ring's free-running
/// indices (in guest memory, so they survive too) say how far the dead consoled
/// got. The difference is what to do again or not at all — nothing lost, nothing
/// twice. All positions wrap, as ring indices do.
public struct KeeperLedger: Hashable, Sendable {
    /// The ring's `out_cons` and `in_prod` when the first consoled attached; nil
    /// before that.
    public private(set) var base: (outCons: UInt32, inProd: UInt32)?
    /// Output bytes received from consoleds since then.
    public private(set) var receivedOut: UInt32 = 0
    /// Input bytes sent to consoleds since then.
    public private(set) var sentIn: UInt32 = 0

    public init() {}

    public static func == (a: KeeperLedger, b: KeeperLedger) -> Bool {
        a.base?.outCons == b.base?.outCons && a.base?.inProd == b.base?.inProd && a.receivedOut == b.receivedOut
            && a.sentIn == b.sentIn
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(base?.outCons)
        hasher.combine(base?.inProd)
        hasher.combine(receivedOut)
        hasher.combine(sentIn)
    }

    /// The keeper received `count` output bytes from consoled.
    public mutating func received(_ count: Int) { receivedOut &+= UInt32(truncatingIfNeeded: count) }

    /// The keeper sent `count` input bytes to consoled.
    public mutating func sent(_ count: Int) { sentIn &+= UInt32(truncatingIfNeeded: count) }

    /// What a consoled attaching must do about input sent to its predecessor.
    public enum InputRecovery: Hashable, Sendable {
        /// Every byte sent reached the ring (or this is the first consoled).
        case nothing
        /// The last `count` bytes sent never reached the ring: send them again.
        case resend(count: Int)
        /// The ring claims a position the keeper cannot explain (more than the
        /// history holds, or ahead of what was sent): nothing can be replayed.
        case impossible(unconfirmed: UInt32)
    }

    /// A consoled attaches, finding the ring at `outCons` / `inProd`. The keeper
    /// still holds the last `history` input bytes it sent. Records the first
    /// attach's base; on later ones, says what input to send again (and forgets
    /// having sent it, since it will be sent anew).
    public mutating func attach(outCons: UInt32, inProd: UInt32, history: Int) -> InputRecovery {
        guard let base else {
            self.base = (outCons, inProd)
            return .nothing
        }
        let unconfirmed = base.inProd &+ sentIn &- inProd
        if unconfirmed == 0 { return .nothing }
        guard let count = Int(exactly: unconfirmed), count <= history else {
            return .impossible(unconfirmed: unconfirmed)
        }
        sentIn &-= unconfirmed
        return .resend(count: count)
    }

    /// The `out_cons` the ring must reach: every output byte the keeper received
    /// was delivered to its client (or is queued for it). Nil before any attach.
    public var deliveredOutCons: UInt32? { base.map { $0.outCons &+ receivedOut } }

    /// consoled's side: how many output bytes, from the ring's `outCons`, the
    /// keeper already has and so are to be consumed without sending them again.
    /// Zero when there are none; nil when `delivered` is not within one ring of
    /// `outCons` (the guest scribbled on the index, or the keeper is confused).
    public static func alreadyDelivered(outCons: UInt32, delivered: UInt32) -> Int? {
        let count = delivered &- outCons
        guard count <= UInt32(ConsoleInterface.outSize) else { return nil }
        return Int(count)
    }
}
