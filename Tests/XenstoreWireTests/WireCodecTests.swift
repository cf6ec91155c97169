//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import PropertyBased
import Testing
import XenABI
import XenstoreWire

@Suite("Golden vectors")
struct GoldenVectorTests {
    @Test("every type 0–26 has a vector")
    func coversEveryType() {
        #expect(goldenVectors.map(\.request.type.rawValue) == Array(0...26))
    }

    @Test("request encodes to the golden bytes", arguments: goldenVectors)
    func encodeRequest(_ vector: GoldenVector) {
        #expect(vector.request.encoded() == vector.requestBytes)
    }

    @Test("reply encodes to the golden bytes", arguments: goldenVectors)
    func encodeReply(_ vector: GoldenVector) {
        #expect(vector.reply.encoded() == vector.replyBytes)
    }

    @Test("golden request and reply decode to the values", arguments: goldenVectors)
    func decode(_ vector: GoldenVector) {
        var decoder = XenstoreDecoder()
        #expect(decoder.feed(vector.requestBytes) == [vector.request])
        #expect(decoder.feed(vector.replyBytes) == [vector.reply])
        #expect(decoder.state == .needMoreData(XenstoreHeader.size))
        #expect(decoder.buffered == 0)
    }

    @Test("reply builders produce the golden replies", arguments: goldenVectors)
    func builders(_ vector: GoldenVector) {
        let reply = vector.reply
        if reply.type == .error {
            let error = XenstoreError(wireName: "ENOSYS")
            #expect(XenstoreMessage.error(error, replyingTo: vector.request).encoded() == vector.replyBytes)
            #expect(reply.replyError == .ENOSYS)
        } else if reply.type == .watchEvent {
            #expect(XenstoreMessage.watchEvent(path: "/a", token: Array("tok".utf8)).encoded() == vector.replyBytes)
        } else if reply.payload == XenstorePayload.ok {
            #expect(XenstoreMessage.ok(replyingTo: vector.request).encoded() == vector.replyBytes)
        } else {
            #expect(XenstoreMessage.reply(to: vector.request, payload: reply.payload).encoded() == vector.replyBytes)
        }
    }
}

@Suite("Incremental decoder")
struct DecoderTests {
    /// Every golden request and reply back to back: a stream with many message boundaries.
    static let stream: [UInt8] = goldenVectors.flatMap { $0.requestBytes + $0.replyBytes }
    static let messages: [XenstoreMessage] = goldenVectors.flatMap { [$0.request, $0.reply] }

    @Test func wholeStreamAtOnce() {
        var decoder = XenstoreDecoder()
        #expect(decoder.feed(Self.stream) == Self.messages)
    }

    @Test func byteAtATime() {
        var decoder = XenstoreDecoder()
        var out: [XenstoreMessage] = []
        for byte in Self.stream {
            out += decoder.feed([byte])
        }
        #expect(out == Self.messages)
        #expect(decoder.buffered == 0)
    }

    @Test func twoMessagesInOneChunk() {
        let first = XenstoreMessage(type: .read, reqID: 1, payload: "/a\0")
        let second = XenstoreMessage(type: .write, reqID: 2, payload: "/a\0v")
        var decoder = XenstoreDecoder()
        #expect(decoder.feed(first.encoded() + second.encoded()) == [first, second])
    }

    @Test func headerSplitAcrossChunks() {
        let message = XenstoreMessage(type: .directory, reqID: 0xDEAD_BEEF, txID: 3, payload: "/local\0")
        let bytes = message.encoded()
        var decoder = XenstoreDecoder()
        #expect(decoder.feed(bytes[0..<5]).isEmpty)
        #expect(decoder.state == .needMoreData(11))
        #expect(decoder.feed(bytes[5..<13]).isEmpty)
        #expect(decoder.state == .needMoreData(3))
        #expect(decoder.feed(bytes[13..<17]).isEmpty)
        #expect(decoder.state == .needMoreData(6))  // header known: 7 payload bytes, 1 seen
        #expect(decoder.feed(bytes[17...]) == [message])
    }

    @Test func stepwiseNext() {
        let message = XenstoreMessage(type: .rm, payload: "/x\0")
        var decoder = XenstoreDecoder()
        decoder.append(message.encoded() + [0x01])
        #expect(decoder.next() == .message(message))
        #expect(decoder.next() == .needMoreData(15))
    }

    @Test func maximumPayloadIsAccepted() {
        let message = XenstoreMessage(type: .write, payload: [UInt8](repeating: 0x41, count: 4096))
        var decoder = XenstoreDecoder()
        #expect(decoder.feed(message.encoded()) == [message])
        #expect(decoder.state == .needMoreData(16))
    }

    @Test func oversizeHeaderFailsForGood() {
        let good = XenstoreMessage(type: .read, reqID: 9, payload: "/a\0")
        // type READ, req 1, tx 0, len 4097 (0x1001).
        let bad = bytes(hex: "02 00 00 00 01 00 00 00 00 00 00 00 01 10 00 00")
        var decoder = XenstoreDecoder()
        #expect(decoder.feed(good.encoded() + bad) == [good])
        #expect(decoder.state == .failed(.payloadTooLarge(announced: 4097)))
        #expect(decoder.feed(good.encoded()).isEmpty)
        #expect(decoder.next() == .failed(.payloadTooLarge(announced: 4097)))
    }

    @Test func hugeLengthDoesNotTrap() {
        var decoder = XenstoreDecoder()
        #expect(decoder.feed(bytes(hex: "00 00 00 00 00 00 00 00 00 00 00 00 ff ff ff ff")).isEmpty)
        #expect(decoder.state == .failed(.payloadTooLarge(announced: 0xFFFF_FFFF)))
    }

    @Test func unknownTypesAreDecodedNotRejected() {
        let message = XenstoreMessage(type: XenstoreMessageType(rawValue: 999), payload: "x")
        var decoder = XenstoreDecoder()
        #expect(decoder.feed(message.encoded()) == [message])
    }

    @Test func randomChunkSplits() async {
        let total = Self.stream.count
        await propertyCheck(count: 200, input: Gen.int(in: 1...total).array(of: 0...40)) { cuts in
            var decoder = XenstoreDecoder()
            var out: [XenstoreMessage] = []
            var start = 0
            for cut in cuts.sorted() where cut > start {
                out += decoder.feed(Self.stream[start..<cut])
                start = cut
            }
            out += decoder.feed(Self.stream[start...])
            #expect(out == Self.messages)
        }
    }

    @Test func randomMessagesRoundTrip() async {
        let payloads = Gen.uint8(in: 0...255).array(of: 0...64)
        let messages = Gen.uint32(in: 0...30).array(of: 1...8)
        await propertyCheck(count: 100, input: messages, payloads, Gen.int(in: 1...17)) { types, payload, chunk in
            let sent = types.enumerated().map {
                XenstoreMessage(type: XenstoreMessageType(rawValue: $1), reqID: UInt32($0), txID: $1, payload: payload)
            }
            let stream = sent.flatMap { $0.encoded() }
            var decoder = XenstoreDecoder()
            var out: [XenstoreMessage] = []
            var index = 0
            while index < stream.count {
                out += decoder.feed(stream[index..<min(index + chunk, stream.count)])
                index += chunk
            }
            #expect(out == sent)
        }
    }
}

@Suite("Payload helpers")
struct PayloadTests {
    @Test(
        "single-argument strictness",
        arguments: [
            ("/a\0", "/a" as String?), ("\0", ""), ("/a", nil), ("", nil), ("/a\0\0", nil), ("/a\0b", nil),
            ("a\0b\0", nil),
        ]
    )
    func singleArgument(_ payload: String, _ expected: String?) {
        let result = try? XenstorePayload.singleArgument(Array(payload.utf8))
        #expect(result.map { String(decoding: $0, as: UTF8.self) } == expected)
        if expected == nil {
            #expect(throws: XenstoreError.EINVAL) { try XenstorePayload.singleArgument(Array(payload.utf8)) }
        }
    }

    @Test func argumentLists() throws {
        #expect(try XenstorePayload.arguments([]) == [])
        #expect(try XenstorePayload.arguments(Array("\0".utf8)) == [[]])
        #expect(try XenstorePayload.arguments(Array("a\0bc\0".utf8)) == [Array("a".utf8), Array("bc".utf8)])
        #expect(try XenstorePayload.arguments(Array("a\0\0".utf8)) == [Array("a".utf8), []])
        #expect(throws: XenstoreError.EINVAL) { try XenstorePayload.arguments(Array("a\0b".utf8)) }
        #expect(throws: XenstoreError.EINVAL) { try XenstorePayload.arguments(Array("a\0b\0c\0".utf8), count: 2) }
    }

    @Test func writeSplitKeepsNULsInValue() throws {
        let (path, value) = try XenstorePayload.splitFirst(Array("/a\0x\0y".utf8))
        #expect(path == Array("/a".utf8))
        #expect(value == Array("x\0y".utf8))
        #expect(throws: XenstoreError.EINVAL) { try XenstorePayload.splitFirst(Array("/a".utf8)) }
    }

    @Test func decimals() {
        #expect(XenstorePayload.decimal(Array("4096".utf8), as: UInt32.self) == 4096)
        #expect(XenstorePayload.decimal(Array("4294967295".utf8), as: UInt32.self) == .max)
        #expect(XenstorePayload.decimal(Array("4294967296".utf8), as: UInt32.self) == nil)
        #expect(XenstorePayload.decimal(Array("-1".utf8), as: UInt32.self) == nil)
        #expect(XenstorePayload.decimal(Array(" 1".utf8), as: UInt32.self) == nil)
        #expect(XenstorePayload.decimal([], as: UInt32.self) == nil)
        #expect(XenstorePayload.domid(Array("65535".utf8)) == DomID(65535))
        #expect(XenstorePayload.domid(Array("65536".utf8)) == nil)
    }

    @Test func replyPayloads() {
        #expect(XenstorePayload.ok == [0x4F, 0x4B, 0])
        #expect(XenstorePayload.error(.EAGAIN) == Array("EAGAIN\0".utf8))
        #expect(XenstorePayload.strings(["a", "bc"]) == Array("a\0bc\0".utf8))
        #expect(XenstorePayload.strings([String]()) == [])
        #expect(XenstorePayload.watchEvent(path: "/p", token: [1, 2]) == [0x2F, 0x70, 0, 1, 2, 0])
    }

    @Test func unknownErrorNamesMapToEINVAL() {
        let message = XenstoreMessage(type: .error, payload: "EWHATEVER\0")
        #expect(message.replyError == .EINVAL)
        #expect(XenstoreMessage(type: .read, payload: "EACCES\0").replyError == nil)
        #expect(XenstoreMessage(type: .error, payload: "EACCES\0").replyError == .EACCES)
    }
}

@Suite("Permission strings")
struct PermissionTests {
    @Test(
        "parsing accepts strtol base-0 numbers",
        arguments: [
            ("b0", XenstorePermission(.both, .dom0) as XenstorePermission?),
            ("r5", XenstorePermission(.read, DomID(5))),
            ("w0x1f", XenstorePermission(.write, DomID(31))),
            ("n0X10", XenstorePermission(.none, DomID(16))),
            ("r017", XenstorePermission(.read, DomID(15))),
            ("b+7", XenstorePermission(.both, DomID(7))),
            ("r65535", XenstorePermission(.read, DomID(65535))),
            ("r65536", nil), ("x5", nil), ("r", nil), ("", nil), ("r-1", nil), ("r 5", nil), ("r5a", nil),
            ("r08", nil), ("r0x", nil), ("R5", nil),
        ]
    )
    func parse(_ text: String, _ expected: XenstorePermission?) {
        #expect(XenstorePermission(text) == expected)
    }

    @Test func printsDecimal() {
        #expect(XenstorePermission("w0x1f")?.description == "w31")
    }

    @Test func listRoundTrip() throws {
        let wire = Array("n5\0r0\0b0x7\0".utf8)
        let perms = try #require(XenstorePermissions(wire: wire))
        #expect(perms.owner == XenstorePermission(.none, DomID(5)))
        #expect(perms.acl == [XenstorePermission(.read, .dom0), XenstorePermission(.both, DomID(7))])
        #expect(perms.wire == Array("n5\0r0\0b7\0".utf8))
        #expect(XenstorePermissions(wire: []) == nil)
        #expect(XenstorePermissions(wire: Array("r5".utf8)) == nil)
        #expect(XenstorePermissions(wire: Array("r5\0q1\0".utf8)) == nil)
    }

    @Test func accessSemantics() throws {
        // Owner 5 with default read; 7 is denied; 9 appears twice, the first entry wins.
        let perms = try #require(XenstorePermissions(wire: Array("r5\0n7\0w9\0b9\0".utf8)))
        #expect(perms.access(for: DomID(5)) == .both)  // owner
        #expect(perms.access(for: DomID(7)) == .none)
        #expect(perms.access(for: DomID(9)) == .write)
        #expect(perms.access(for: DomID(3)) == .read)  // default letter
        #expect(XenstoreAccess.read.union(.write) == .both)
        #expect(!XenstoreAccess.write.canRead && XenstoreAccess.write.canWrite)
    }
}
