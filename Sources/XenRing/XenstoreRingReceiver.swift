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
/// A request leaves the ring only once it is whole (header and payload), so a
/// server that dies between two steps leaves every request either handled or still
/// in the ring — a restarted server resumes exactly. The one exception is a
/// message longer than the ring (up to 16 + 4096 bytes into 1024): it cannot sit
/// there whole, so it is taken in fragments as they arrive.
///
/// Everything here comes from the guest: the indices are checked by the ring
/// (``RingError`` for an impossible pair), and a header announcing more than
/// `XENSTORE_PAYLOAD_MAX` is reported, not trusted.
public struct XenstoreRingReceiver: Sendable {
    /// What the next step found.
    public enum Step: Hashable, Sendable {
        /// Nothing to take yet.
        case none
        /// A whole message (header and payload), consumed.
        case message([UInt8])
        /// Part of a message longer than the ring, consumed; more will follow.
        case fragment([UInt8])
        /// A header announcing an oversize payload (not consumed): a protocol error.
        case oversize(header: [UInt8])
    }

    /// Bytes still to come of a message longer than the ring.
    public private(set) var streaming = 0

    public init() {}

    /// Forgets a message in progress (the ring was reset).
    public mutating func reset() { streaming = 0 }

    /// Takes the next message, or fragment, out of `reader`.
    public mutating func next<Memory: SharedMemory>(from reader: RingReader<Memory>) throws(RingError) -> Step {
        let ringSize = XenstoreInterface.ringSize
        if streaming > 0 {
            let bytes = try reader.peek(maxCount: min(streaming, ringSize))
            guard !bytes.isEmpty else { return .none }
            try reader.consume(bytes.count)
            streaming -= bytes.count
            return .fragment(bytes)
        }
        let header = try reader.peek(maxCount: XenstoreHeader.size)
        guard header.count == XenstoreHeader.size else { return .none }
        let offset = XenstoreHeader.lenOffset
        let announced =
            UInt32(header[offset]) | UInt32(header[offset + 1]) << 8 | UInt32(header[offset + 2]) << 16
            | UInt32(header[offset + 3]) << 24
        guard let length = Int(exactly: announced), length <= XenstoreInterface.payloadMax else {
            return .oversize(header: header)
        }
        let total = XenstoreHeader.size + length
        if total > ringSize {
            streaming = total
            return try next(from: reader)
        }
        let message = try reader.peek(maxCount: total)
        guard message.count == total else { return .none }
        try reader.consume(total)
        return .message(message)
    }
}
