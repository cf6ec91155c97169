//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// One xenstore message: the 16-byte `xsd_sockmsg` header plus its payload.
///
/// Wire layout (every field a little-endian `uint32_t`, see ``XenstoreHeader``):
///
/// ```
///  offset  field    meaning
///       0  type     XenstoreMessageType (replies: the request's type, or ERROR = 16)
///       4  req_id   chosen by the client, echoed in the reply; 0 in WATCH_EVENTs
///       8  tx_id    transaction the request belongs to (0 = none); echoed; 0 in WATCH_EVENTs
///      12  len      payload length, at most XENSTORE_PAYLOAD_MAX = 4096
///      16  payload  len bytes
/// ```
///
/// Invariant kept by the codec, not by this type: a message on the wire has
/// `payload.count <= XenstoreInterface.payloadMax`. The value itself may hold a longer
/// payload (so that a caller can build one and then check ``fitsOnWire``); producers in
/// this package never emit such a message.
public struct XenstoreMessage: Hashable, Sendable, CustomStringConvertible {
    /// The message type. Unknown values are kept as they are so a server can answer ENOSYS.
    public var type: XenstoreMessageType
    /// The request id, echoed in the reply.
    public var reqID: UInt32
    /// The transaction id, echoed in the reply.
    public var txID: UInt32
    /// The payload bytes (strings are NUL-terminated where the protocol says so).
    public var payload: [UInt8]

    public init(type: XenstoreMessageType, reqID: UInt32 = 0, txID: UInt32 = 0, payload: [UInt8] = []) {
        self.type = type
        self.reqID = reqID
        self.txID = txID
        self.payload = payload
    }

    /// Builds a message whose payload is the UTF-8 of `payload`, with no NUL added.
    public init(type: XenstoreMessageType, reqID: UInt32 = 0, txID: UInt32 = 0, payload: String) {
        self.init(type: type, reqID: reqID, txID: txID, payload: Array(payload.utf8))
    }

    /// True when the payload is within `XENSTORE_PAYLOAD_MAX`, i.e. the message may be sent.
    public var fitsOnWire: Bool { payload.count <= XenstoreInterface.payloadMax }

    /// The header plus payload, header fields little-endian regardless of the host.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        encode(into: &bytes)
        return bytes
    }

    /// Appends the header and payload to `buffer`.
    public func encode(into buffer: inout [UInt8]) {
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: encodedCount))
        // SAFETY: the `encodedCount` bytes just appended, used only inside the closure.
        buffer.withUnsafeMutableBytes { bytes in store(into: UnsafeMutableRawBufferPointer(rebasing: bytes[start...])) }
    }

    /// Bytes on the wire: the header plus the payload.
    public var encodedCount: Int { XenstoreHeader.size + payload.count }

    /// Stores the message at the start of `destination` (which must hold at least
    /// ``encodedCount`` bytes): the header, fields little-endian, then the payload. The
    /// one encoder: `encode(into:)`, the socket transport and the journal all use it.
    public func store(into destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count >= encodedCount, "no room for a xenstore message")
        // The length always fits: an Array's count is far below UInt32.max in any
        // message this package builds, and a longer one is a caller bug we clamp rather than trap on.
        let length = UInt32(exactly: payload.count) ?? UInt32.max
        destination.storeBytes(of: type.rawValue.littleEndian, toByteOffset: XenstoreHeader.typeOffset, as: UInt32.self)
        destination.storeBytes(of: reqID.littleEndian, toByteOffset: XenstoreHeader.reqIDOffset, as: UInt32.self)
        destination.storeBytes(of: txID.littleEndian, toByteOffset: XenstoreHeader.txIDOffset, as: UInt32.self)
        destination.storeBytes(of: length.littleEndian, toByteOffset: XenstoreHeader.lenOffset, as: UInt32.self)
        // SAFETY: the payload's bytes, read only during the copy into the checked room.
        payload.withUnsafeBytes { payload in
            UnsafeMutableRawBufferPointer(rebasing: destination[XenstoreHeader.size...]).copyMemory(from: payload)
        }
    }

    public var description: String {
        "\(type)(req \(reqID), tx \(txID), \(payload.count) bytes)"
    }
}

// MARK: - Replies

extension XenstoreMessage {
    /// A reply to `request` with the request's type, req_id and tx_id and the given payload.
    public static func reply(to request: XenstoreMessage, payload: [UInt8]) -> XenstoreMessage {
        XenstoreMessage(type: request.type, reqID: request.reqID, txID: request.txID, payload: payload)
    }

    /// The generic success reply, `OK` plus NUL.
    public static func ok(replyingTo request: XenstoreMessage) -> XenstoreMessage {
        reply(to: request, payload: XenstorePayload.ok)
    }

    /// An ERROR (16) reply carrying the error's wire name plus NUL.
    public static func error(_ error: XenstoreError, replyingTo request: XenstoreMessage) -> XenstoreMessage {
        XenstoreMessage(
            type: .error,
            reqID: request.reqID,
            txID: request.txID,
            payload: XenstorePayload.error(error)
        )
    }

    /// An unsolicited WATCH_EVENT (`path NUL token NUL`, req_id = tx_id = 0).
    @inlinable
    public static func watchEvent(path: some StringProtocol, token: [UInt8]) -> XenstoreMessage {
        XenstoreMessage(type: .watchEvent, payload: XenstorePayload.watchEvent(path: path, token: token))
    }

    /// For an ERROR message, the error it names (unknown names map to EINVAL as libxenstore does);
    /// nil for any other type.
    public var replyError: XenstoreError? {
        guard type == .error else { return nil }
        let name = payload.last == 0 ? payload.dropLast() : payload[...]
        return XenstoreError(wireName: String(decoding: name, as: UTF8.self))
    }
}
