//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import XenABI
import XenstoreWire

/// One request and its reply as hand-checked little-endian bytes. The hex was produced
/// independently of this package (Python `struct.pack('<IIII', …)`), so the tests compare
/// the Swift encoder and decoder against an outside oracle.
struct GoldenVector: Sendable, CustomTestStringConvertible {
    let name: String
    let request: XenstoreMessage
    let requestBytes: [UInt8]
    let reply: XenstoreMessage
    let replyBytes: [UInt8]

    init(
        _ name: String,
        type: UInt32,
        reqID: UInt32,
        txID: UInt32,
        payload: String,
        hex: String,
        replyType: UInt32,
        replyReqID: UInt32,
        replyTxID: UInt32,
        replyPayload: String,
        replyHex: String
    ) {
        self.name = name
        request = XenstoreMessage(
            type: XenstoreMessageType(rawValue: type),
            reqID: reqID,
            txID: txID,
            payload: payload
        )
        requestBytes = bytes(hex: hex)
        reply = XenstoreMessage(
            type: XenstoreMessageType(rawValue: replyType),
            reqID: replyReqID,
            txID: replyTxID,
            payload: replyPayload
        )
        replyBytes = bytes(hex: replyHex)
    }

    var testDescription: String { name }
}

func bytes(hex: String) -> [UInt8] {
    hex.split(separator: " ").map { UInt8($0, radix: 16)! }
}

/// A request and reply for every message type 0–26. Types the client may not send (15
/// WATCH_EVENT, 16 ERROR, 20 RESTRICT) pair a client message with the server's answer
/// (ENOSYS) — for 15 the "reply" is a server WATCH_EVENT.
let goldenVectors: [GoldenVector] = [
    GoldenVector(
        "CONTROL",
        type: 0,
        reqID: 0x0000_0000,
        txID: 0x0,
        payload: "print\0hello\0",
        hex:
            "00 00 00 00 00 00 00 00 00 00 00 00 0c 00 00 00 70 72 69 6e 74 00 68 65 "
            + "6c 6c 6f 00",
        replyType: 0,
        replyReqID: 0x0000_0000,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "00 00 00 00 00 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "DIRECTORY",
        type: 1,
        reqID: 0x0000_0001,
        txID: 0x0,
        payload: "/local/domain\0",
        hex:
            "01 00 00 00 01 00 00 00 00 00 00 00 0e 00 00 00 2f 6c 6f 63 61 6c 2f 64 "
            + "6f 6d 61 69 6e 00",
        replyType: 1,
        replyReqID: 0x0000_0001,
        replyTxID: 0x0,
        replyPayload: "0\01\0",
        replyHex: "01 00 00 00 01 00 00 00 00 00 00 00 04 00 00 00 30 00 31 00"
    ),
    GoldenVector(
        "READ",
        type: 2,
        reqID: 0x0000_0002,
        txID: 0x0,
        payload: "/vm/name\0",
        hex:
            "02 00 00 00 02 00 00 00 00 00 00 00 09 00 00 00 2f 76 6d 2f 6e 61 6d 65 "
            + "00",
        replyType: 2,
        replyReqID: 0x0000_0002,
        replyTxID: 0x0,
        replyPayload: "guest",
        replyHex: "02 00 00 00 02 00 00 00 00 00 00 00 05 00 00 00 67 75 65 73 74"
    ),
    GoldenVector(
        "GET_PERMS",
        type: 3,
        reqID: 0x0000_0003,
        txID: 0x0,
        payload: "/local\0",
        hex: "03 00 00 00 03 00 00 00 00 00 00 00 07 00 00 00 2f 6c 6f 63 61 6c 00",
        replyType: 3,
        replyReqID: 0x0000_0003,
        replyTxID: 0x0,
        replyPayload: "n0\0r5\0",
        replyHex: "03 00 00 00 03 00 00 00 00 00 00 00 06 00 00 00 6e 30 00 72 35 00"
    ),
    GoldenVector(
        "WATCH",
        type: 4,
        reqID: 0x0000_0004,
        txID: 0x0,
        payload: "/local/domain\0tok\0",
        hex:
            "04 00 00 00 04 00 00 00 00 00 00 00 12 00 00 00 2f 6c 6f 63 61 6c 2f 64 "
            + "6f 6d 61 69 6e 00 74 6f 6b 00",
        replyType: 4,
        replyReqID: 0x0000_0004,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "04 00 00 00 04 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "UNWATCH",
        type: 5,
        reqID: 0x0000_0005,
        txID: 0x0,
        payload: "/local/domain\0tok\0",
        hex:
            "05 00 00 00 05 00 00 00 00 00 00 00 12 00 00 00 2f 6c 6f 63 61 6c 2f 64 "
            + "6f 6d 61 69 6e 00 74 6f 6b 00",
        replyType: 5,
        replyReqID: 0x0000_0005,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "05 00 00 00 05 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "TRANSACTION_START",
        type: 6,
        reqID: 0x0000_0006,
        txID: 0x0,
        payload: "\0",
        hex: "06 00 00 00 06 00 00 00 00 00 00 00 01 00 00 00 00",
        replyType: 6,
        replyReqID: 0x0000_0006,
        replyTxID: 0x0,
        replyPayload: "1\0",
        replyHex: "06 00 00 00 06 00 00 00 00 00 00 00 02 00 00 00 31 00"
    ),
    GoldenVector(
        "TRANSACTION_END",
        type: 7,
        reqID: 0x0000_0007,
        txID: 0x1,
        payload: "T\0",
        hex: "07 00 00 00 07 00 00 00 01 00 00 00 02 00 00 00 54 00",
        replyType: 7,
        replyReqID: 0x0000_0007,
        replyTxID: 0x1,
        replyPayload: "OK\0",
        replyHex: "07 00 00 00 07 00 00 00 01 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "INTRODUCE",
        type: 8,
        reqID: 0x0000_0008,
        txID: 0x0,
        payload: "5\0123456\07\0",
        hex:
            "08 00 00 00 08 00 00 00 00 00 00 00 0b 00 00 00 35 00 31 32 33 34 35 36 "
            + "00 37 00",
        replyType: 8,
        replyReqID: 0x0000_0008,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "08 00 00 00 08 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "RELEASE",
        type: 9,
        reqID: 0x0000_0008,
        txID: 0x0,
        payload: "5\0",
        hex: "09 00 00 00 08 00 00 00 00 00 00 00 02 00 00 00 35 00",
        replyType: 9,
        replyReqID: 0x0000_0008,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "09 00 00 00 08 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "GET_DOMAIN_PATH",
        type: 10,
        reqID: 0x0000_000A,
        txID: 0x0,
        payload: "5\0",
        hex: "0a 00 00 00 0a 00 00 00 00 00 00 00 02 00 00 00 35 00",
        replyType: 10,
        replyReqID: 0x0000_000A,
        replyTxID: 0x0,
        replyPayload: "/local/domain/5\0",
        replyHex:
            "0a 00 00 00 0a 00 00 00 00 00 00 00 10 00 00 00 2f 6c 6f 63 61 6c 2f 64 "
            + "6f 6d 61 69 6e 2f 35 00"
    ),
    GoldenVector(
        "WRITE",
        type: 11,
        reqID: 0x0102_0304,
        txID: 0x102,
        payload: "/a\0hel\0lo",
        hex:
            "0b 00 00 00 04 03 02 01 02 01 00 00 09 00 00 00 2f 61 00 68 65 6c 00 6c "
            + "6f",
        replyType: 11,
        replyReqID: 0x0102_0304,
        replyTxID: 0x102,
        replyPayload: "OK\0",
        replyHex: "0b 00 00 00 04 03 02 01 02 01 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "MKDIR",
        type: 12,
        reqID: 0x0000_000C,
        txID: 0x0,
        payload: "/a/b\0",
        hex: "0c 00 00 00 0c 00 00 00 00 00 00 00 05 00 00 00 2f 61 2f 62 00",
        replyType: 12,
        replyReqID: 0x0000_000C,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "0c 00 00 00 0c 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "RM",
        type: 13,
        reqID: 0x0000_000D,
        txID: 0x0,
        payload: "/a\0",
        hex: "0d 00 00 00 0d 00 00 00 00 00 00 00 03 00 00 00 2f 61 00",
        replyType: 13,
        replyReqID: 0x0000_000D,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "0d 00 00 00 0d 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "SET_PERMS",
        type: 14,
        reqID: 0x0000_000E,
        txID: 0x0,
        payload: "/a\0b0\0r5\0",
        hex:
            "0e 00 00 00 0e 00 00 00 00 00 00 00 09 00 00 00 2f 61 00 62 30 00 72 35 "
            + "00",
        replyType: 14,
        replyReqID: 0x0000_000E,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "0e 00 00 00 0e 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "WATCH_EVENT",
        type: 15,
        reqID: 0x0000_000F,
        txID: 0x0,
        payload: "",
        hex: "0f 00 00 00 0f 00 00 00 00 00 00 00 00 00 00 00",
        replyType: 15,
        replyReqID: 0x0000_0000,
        replyTxID: 0x0,
        replyPayload: "/a\0tok\0",
        replyHex: "0f 00 00 00 00 00 00 00 00 00 00 00 07 00 00 00 2f 61 00 74 6f 6b 00"
    ),
    GoldenVector(
        "ERROR",
        type: 16,
        reqID: 0x0000_0010,
        txID: 0x0,
        payload: "EINVAL\0",
        hex: "10 00 00 00 10 00 00 00 00 00 00 00 07 00 00 00 45 49 4e 56 41 4c 00",
        replyType: 16,
        replyReqID: 0x0000_0010,
        replyTxID: 0x0,
        replyPayload: "ENOSYS\0",
        replyHex: "10 00 00 00 10 00 00 00 00 00 00 00 07 00 00 00 45 4e 4f 53 59 53 00"
    ),
    GoldenVector(
        "IS_DOMAIN_INTRODUCED",
        type: 17,
        reqID: 0x0000_0011,
        txID: 0x0,
        payload: "5\0",
        hex: "11 00 00 00 11 00 00 00 00 00 00 00 02 00 00 00 35 00",
        replyType: 17,
        replyReqID: 0x0000_0011,
        replyTxID: 0x0,
        replyPayload: "T\0",
        replyHex: "11 00 00 00 11 00 00 00 00 00 00 00 02 00 00 00 54 00"
    ),
    GoldenVector(
        "RESUME",
        type: 18,
        reqID: 0x0000_0012,
        txID: 0x0,
        payload: "5\0",
        hex: "12 00 00 00 12 00 00 00 00 00 00 00 02 00 00 00 35 00",
        replyType: 18,
        replyReqID: 0x0000_0012,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "12 00 00 00 12 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "SET_TARGET",
        type: 19,
        reqID: 0x0000_0013,
        txID: 0x0,
        payload: "6\05\0",
        hex: "13 00 00 00 13 00 00 00 00 00 00 00 04 00 00 00 36 00 35 00",
        replyType: 19,
        replyReqID: 0x0000_0013,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "13 00 00 00 13 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "RESTRICT",
        type: 20,
        reqID: 0x0000_0014,
        txID: 0x0,
        payload: "5\0",
        hex: "14 00 00 00 14 00 00 00 00 00 00 00 02 00 00 00 35 00",
        replyType: 16,
        replyReqID: 0x0000_0014,
        replyTxID: 0x0,
        replyPayload: "ENOSYS\0",
        replyHex: "10 00 00 00 14 00 00 00 00 00 00 00 07 00 00 00 45 4e 4f 53 59 53 00"
    ),
    GoldenVector(
        "RESET_WATCHES",
        type: 21,
        reqID: 0x0000_0015,
        txID: 0x0,
        payload: "\0",
        hex: "15 00 00 00 15 00 00 00 00 00 00 00 01 00 00 00 00",
        replyType: 21,
        replyReqID: 0x0000_0015,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "15 00 00 00 15 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "DIRECTORY_PART",
        type: 22,
        reqID: 0x0000_0016,
        txID: 0x0,
        payload: "/local/domain\00\0",
        hex:
            "16 00 00 00 16 00 00 00 00 00 00 00 10 00 00 00 2f 6c 6f 63 61 6c 2f 64 "
            + "6f 6d 61 69 6e 00 30 00",
        replyType: 22,
        replyReqID: 0x0000_0016,
        replyTxID: 0x0,
        replyPayload: "42\00\05\0\0",
        replyHex: "16 00 00 00 16 00 00 00 00 00 00 00 08 00 00 00 34 32 00 30 00 35 00 00"
    ),
    GoldenVector(
        "GET_FEATURE",
        type: 23,
        reqID: 0x0000_0017,
        txID: 0x0,
        payload: "",
        hex: "17 00 00 00 17 00 00 00 00 00 00 00 00 00 00 00",
        replyType: 23,
        replyReqID: 0x0000_0017,
        replyTxID: 0x0,
        replyPayload: "0\0",
        replyHex: "17 00 00 00 17 00 00 00 00 00 00 00 02 00 00 00 30 00"
    ),
    GoldenVector(
        "SET_FEATURE",
        type: 24,
        reqID: 0x0000_0018,
        txID: 0x0,
        payload: "5\00\0",
        hex: "18 00 00 00 18 00 00 00 00 00 00 00 04 00 00 00 35 00 30 00",
        replyType: 24,
        replyReqID: 0x0000_0018,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "18 00 00 00 18 00 00 00 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
    GoldenVector(
        "GET_QUOTA",
        type: 25,
        reqID: 0x0000_0019,
        txID: 0x0,
        payload: "nodes\0",
        hex: "19 00 00 00 19 00 00 00 00 00 00 00 06 00 00 00 6e 6f 64 65 73 00",
        replyType: 25,
        replyReqID: 0x0000_0019,
        replyTxID: 0x0,
        replyPayload: "1000\0",
        replyHex: "19 00 00 00 19 00 00 00 00 00 00 00 05 00 00 00 31 30 30 30 00"
    ),
    GoldenVector(
        "SET_QUOTA",
        type: 26,
        reqID: 0xFFFF_FFFF,
        txID: 0x0,
        payload: "5\0nodes\02000\0",
        hex:
            "1a 00 00 00 ff ff ff ff 00 00 00 00 0d 00 00 00 35 00 6e 6f 64 65 73 00 "
            + "32 30 30 30 00",
        replyType: 26,
        replyReqID: 0xFFFF_FFFF,
        replyTxID: 0x0,
        replyPayload: "OK\0",
        replyHex: "1a 00 00 00 ff ff ff ff 00 00 00 00 03 00 00 00 4f 4b 00"
    ),
]
