//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenMemory

/// xenstored's side of a guest's `req` ring, message by message.
///
/// Everything the ring holds is taken as soon as it is seen, whole message or
/// not: Linux's xenbus notifies only when its write finds the ring *empty*
/// (`prod <= req_cons` in `xb_write`), so a server that left a half-written
/// message in the ring until the rest arrived would never hear of the rest. The
/// bytes of a message in progress are kept in ``pending``.
///
/// Taking is two steps so that a server can record before the guest sees
/// anything consumed: ``peek(from:)`` says what the ring offers, the server
/// records it (a whole message, or the new ``pending`` prefix), then
/// ``take(_:from:)`` consumes it. A server killed between any two steps leaves
/// every byte either recorded or still in the ring; a restarted one resumes
/// with `init(pending:)`.
///
/// Everything here comes from the guest: the indices are checked by the ring
/// (``RingError`` for an impossible pair), and a header announcing more than
/// `XENSTORE_PAYLOAD_MAX` is reported, not trusted.
public struct XenstoreRingReceiver: Sendable {
    /// What the ring offers next.
    public enum Step: Hashable, Sendable {
        /// Nothing new in the ring.
        case none
        /// The rest of a message: `message` is whole (header and payload, with
        /// what ``pending`` held); taking it consumes `taking` bytes of the ring.
        case message([UInt8], taking: Int)
        /// More of a message that is not whole yet: `prefix` is everything of it
        /// so far, the new ``pending`` once `taking` bytes are consumed.
        case partial(prefix: [UInt8], taking: Int)
        /// A header announcing an oversize payload: a protocol error. Nothing is taken.
        case oversize(header: [UInt8])
    }

    /// The start of a message already taken out of the ring (less than a whole message).
    public private(set) var pending: [UInt8]

    /// - Parameter pending: the prefix a previous server recorded (empty for a new ring).
    public init(pending: [UInt8] = []) {
        self.pending = pending
    }

    /// Forgets a message in progress (the ring was reset).
    public mutating func reset() { pending = [] }

    /// What `reader` offers next, without consuming it.
    public func peek<Memory: SharedMemory>(from reader: RingReader<Memory>) throws(RingError) -> Step {
        let header = XenstoreHeader.size
        // Never more than the rest of this message: the next one is a new step.
        var wanted = header + XenstoreInterface.payloadMax - pending.count
        if pending.count >= header {
            guard let length = Self.announcedLength(pending) else {
                return .oversize(header: Array(pending.prefix(header)))
            }
            wanted = header + length - pending.count
        }
        let fresh = try reader.peek(maxCount: wanted)
        guard !fresh.isEmpty else { return .none }
        let bytes = pending + fresh
        guard bytes.count >= header else { return .partial(prefix: bytes, taking: fresh.count) }
        guard let length = Self.announcedLength(bytes) else {
            return .oversize(header: Array(bytes.prefix(header)))
        }
        let total = header + length
        guard bytes.count >= total else { return .partial(prefix: bytes, taking: fresh.count) }
        return .message(Array(bytes.prefix(total)), taking: total - pending.count)
    }

    /// Consumes what ``peek(from:)`` found (once it is recorded) and updates ``pending``.
    public mutating func take<Memory: SharedMemory>(_ step: Step, from reader: RingReader<Memory>) throws(RingError) {
        switch step {
        case .none, .oversize:
            return
        case .message(_, let taking):
            try reader.consume(taking)
            pending = []
        case .partial(let prefix, let taking):
            try reader.consume(taking)
            pending = prefix
        }
    }

    /// The payload length a header announces, nil beyond `XENSTORE_PAYLOAD_MAX`.
    static func announcedLength(_ bytes: [UInt8]) -> Int? {
        let offset = XenstoreHeader.lenOffset
        let announced =
            UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
            | UInt32(bytes[offset + 3]) << 24
        guard let length = Int(exactly: announced), length <= XenstoreInterface.payloadMax else { return nil }
        return length
    }
}
