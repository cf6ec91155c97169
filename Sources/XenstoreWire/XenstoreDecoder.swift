//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// Why a byte stream cannot be decoded any further.
public enum XenstoreDecodingError: Error, Hashable, Sendable {
    /// A header announced a payload longer than `XENSTORE_PAYLOAD_MAX` (4096). cxenstored
    /// drops the connection (and on a ring sets the `error` field to PROTO); so must the caller.
    case payloadTooLarge(announced: UInt32)
}

/// An incremental xenstore stream decoder.
///
/// Feed it byte chunks as they arrive, split anywhere; it hands back every message that
/// is complete. The model is ocaml-xenstore's parser state:
///
/// ```
///   needMoreData(n) --bytes--> needMoreData(n')      (still short of a header or payload)
///   needMoreData(n) --bytes--> message, needMoreData (a whole packet was buffered)
///   needMoreData(n) --bad header--> failed(e)        (terminal: every later feed is ignored)
/// ```
///
/// Invariants:
/// - `buffered` holds only bytes of the message in progress: 0 ≤ buffered < 16 + len.
/// - The output is the same for every split of the same stream (the tests check byte-at-a-time
///   and random splits against decoding the whole stream at once).
/// - Once failed, the decoder stays failed; bytes after the bad header are never interpreted.
public struct XenstoreDecoder: Sendable {
    /// What the decoder is waiting for.
    public enum State: Hashable, Sendable {
        /// At least this many more bytes are needed before the next message is complete.
        case needMoreData(Int)
        /// The stream is broken; the connection must be dropped.
        case failed(XenstoreDecodingError)
    }

    /// The result of one ``next()`` step.
    public enum Step: Hashable, Sendable {
        case message(XenstoreMessage)
        case needMoreData(Int)
        case failed(XenstoreDecodingError)
    }

    // Internal but usable from inlinable code: `append` is inlined into its callers so
    // that it is specialised for their byte type (unspecialised, it cost more than the
    // rest of a request's decoding).
    @usableFromInline var buffer: [UInt8] = []
    @usableFromInline var readIndex = 0
    @usableFromInline var failure: XenstoreDecodingError?

    public init() {}

    /// Where the decoder stands after the bytes fed so far (complete messages already returned).
    public var state: State {
        if let failure { return .failed(failure) }
        return .needMoreData(bytesNeeded)
    }

    /// The number of bytes held for the message in progress.
    public var buffered: Int { buffer.count - readIndex }

    /// Adds bytes to the stream without decoding them; call ``next()`` to take messages out.
    @inlinable
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        guard failure == nil else { return }
        if readIndex > 0 && readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Takes the next complete message out of the buffered bytes, if there is one.
    public mutating func next() -> Step {
        if let failure { return .failed(failure) }
        guard buffered >= XenstoreHeader.size else { return .needMoreData(bytesNeeded) }
        let length = readUInt32(at: readIndex + XenstoreHeader.lenOffset)
        guard let payloadLength = Int(exactly: length), payloadLength <= XenstoreInterface.payloadMax else {
            failure = .payloadTooLarge(announced: length)
            buffer = []
            readIndex = 0
            return .failed(.payloadTooLarge(announced: length))
        }
        guard buffered >= XenstoreHeader.size + payloadLength else { return .needMoreData(bytesNeeded) }
        let start = readIndex + XenstoreHeader.size
        let message = XenstoreMessage(
            type: XenstoreMessageType(rawValue: readUInt32(at: readIndex + XenstoreHeader.typeOffset)),
            reqID: readUInt32(at: readIndex + XenstoreHeader.reqIDOffset),
            txID: readUInt32(at: readIndex + XenstoreHeader.txIDOffset),
            payload: Array(buffer[start..<start + payloadLength])
        )
        readIndex = start + payloadLength
        compactIfWorthwhile()
        return .message(message)
    }

    /// Appends `bytes` and returns every message now complete, in stream order. Check ``state``
    /// afterwards: a `.failed` state means the connection must be dropped (messages decoded
    /// before the bad header are still returned and may be processed).
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [XenstoreMessage] {
        append(bytes)
        var messages: [XenstoreMessage] = []
        while case .message(let message) = next() {
            messages.append(message)
        }
        return messages
    }

    private var bytesNeeded: Int {
        if buffered < XenstoreHeader.size { return XenstoreHeader.size - buffered }
        let length = Int(readUInt32(at: readIndex + XenstoreHeader.lenOffset))
        return max(1, XenstoreHeader.size + length - buffered)
    }

    private func readUInt32(at offset: Int) -> UInt32 {
        UInt32(buffer[offset]) | UInt32(buffer[offset + 1]) << 8 | UInt32(buffer[offset + 2]) << 16
            | UInt32(buffer[offset + 3]) << 24
    }

    private mutating func compactIfWorthwhile() {
        // Drop consumed bytes once they dominate the buffer, keeping append amortised O(1).
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex > 4 * XenstoreInterface.payloadMax && readIndex * 2 > buffer.count {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
    }
}
