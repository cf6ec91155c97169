//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import DeviceModel
import Foundation
import Testing

@Suite("QMPSession")
struct QMPSessionTests {
    /// A session whose only command is `echo` (returns its arguments).
    static func session() -> QMPSession {
        QMPSession { command, arguments in
            command == "echo" ? .value(arguments) : .error(class: "CommandNotFound", description: "no \(command)")
        }
    }

    /// The replies, each decoded; every reply must end with CRLF as QEMU's do.
    static func replies(_ bytes: [UInt8]) throws -> [[String: Any]] {
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.isEmpty || text.hasSuffix("\r\n"))
        return try text.split(separator: "\r\n").map {
            try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    @Test func greetingNamesAVersion() throws {
        let greeting = try #require(try Self.replies(QMPSession.greeting()).first)
        let qmp = try #require(greeting["QMP"] as? [String: Any])
        let version = try #require((qmp["version"] as? [String: Any])?["qemu"] as? [String: Int])
        #expect(version["major"] == 7)
        #expect(qmp["capabilities"] is [Any])
    }

    @Test func commandsWaitForCapabilitiesNegotiation() throws {
        var session = Self.session()
        let before = try Self.replies(session.feed(Array(#"{"execute":"echo","id":1}"#.utf8)).replies)
        #expect((before.first?["error"] as? [String: Any])?["class"] as? String == "CommandNotFound")
        #expect(before.first?["id"] as? Int == 1)
        let negotiated = try Self.replies(session.feed(Array(#"{"execute":"qmp_capabilities","id":2}"#.utf8)).replies)
        #expect(negotiated.first?["return"] is [String: Any])
        let after = try Self.replies(
            session.feed(Array(#"{"execute":"echo","arguments":{"x":"y"},"id":"three"}"#.utf8)).replies
        )
        #expect((after.first?["return"] as? [String: Any])?["x"] as? String == "y")
        #expect(after.first?["id"] as? String == "three")
    }

    /// Objects arrive split anywhere and several at once; braces inside strings
    /// do not end an object.
    @Test func objectsSplitAndJoinedAnyhow() throws {
        let text =
            #"{"execute":"qmp_capabilities"}  {"execute":"echo","arguments":{"s":"} {\"{"}}"# + "\r\n"
            + #"{"execute":"nothing"}"#
        let stream = Array(text.utf8)
        for split in 0...stream.count {
            var session = Self.session()
            let first = session.feed(Array(stream[..<split]))
            let second = session.feed(Array(stream[split...]))
            #expect(!first.close && !second.close)
            let replies = try Self.replies(first.replies + second.replies)
            #expect(replies.count == 3)
            #expect((replies[1]["return"] as? [String: Any])?["s"] as? String == #"} {"{"#)
            #expect((replies[2]["error"] as? [String: Any])?["desc"] as? String == "no nothing")
        }
    }

    @Test func missingExecuteIsAnErrorNotAnEnd() throws {
        var session = Self.session()
        let result = session.feed(Array(#"{"arguments":{}}"#.utf8))
        #expect(!result.close)
        #expect(try Self.replies(result.replies).first?["error"] != nil)
    }

    @Test(arguments: [
        Array("not json".utf8),
        Array(#"{"execute": nope}"#.utf8),
        Array("]".utf8),
        [UInt8](repeating: UInt8(ascii: "["), count: 10) + [UInt8(ascii: "{")],
    ])
    func garbageEndsTheSession(input: [UInt8]) throws {
        var session = Self.session()
        let result = session.feed(input)
        #expect(result.close)
        #expect(try Self.replies(result.replies).first?["error"] != nil)
    }

    /// An object that never ends is cut off at the limit, not buffered for ever.
    @Test func anEndlessObjectIsBounded() {
        var session = Self.session()
        var closed = false
        var fed = 0
        let chunk = Array(#"{"execute":"echo","arguments":{"a":""#.utf8) + [UInt8](repeating: 0x61, count: 4096)
        while !closed && fed <= QMPSession.maximumObject + chunk.count {
            closed = session.feed(fed == 0 ? chunk : [UInt8](repeating: 0x61, count: 4096)).close
            fed += 4096
        }
        #expect(closed)
        #expect(fed <= QMPSession.maximumObject + chunk.count)
    }
}
