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

@testable import XenstoreCore

/// Random request sequences from random connections. Each operation is decoded from one
/// random 64-bit word, so shrinking shortens the sequence and simplifies its words.
@Suite("Engine properties")
struct EnginePropertyTests {
    static let paths = [
        "/", "/a", "/a/b", "/a/b/c", "/local/domain/1", "/local/domain/1/x", "/local/domain/2/y", "rel", "rel/s",
        "@introduceDomain", "@releaseDomain", "/bad/", "//x", "/sp ace", "", "/tool/xenstored",
    ]
    static let values = ["", "v", "b0", "n1", "r2", "w0x3", "T", "F", "1", "0", "1000", "nodes"]
    static let names = Set(XenstoreError.allCases.map(\.name))

    /// Builds a plausible-looking (often invalid) payload from the word's bits.
    static func payload(_ word: UInt64) -> [UInt8] {
        let path = paths[Int((word >> 16) % UInt64(paths.count))]
        let value = values[Int((word >> 24) % UInt64(values.count))]
        let number = String((word >> 32) % 8)
        let shape = (word >> 40) % 8
        let text: String
        switch shape {
        case 0: text = path + "\0"
        case 1: text = path + "\0" + value
        case 2: text = path + "\0" + value + "\0"
        case 3: text = number + "\0" + value + "\0" + number + "\0"
        case 4: text = number + "\0"
        case 5: text = value + "\0" + number + "\0"
        case 6: text = path
        default: text = path + "\0" + path + "\0" + value + "\0"
        }
        return Array(text.utf8)
    }

    @Test func randomRequestsNeverTrapAndAlwaysAnswerProperly() async {
        let words = Gen.uint64(in: 0...UInt64.max).array(of: 1...80)
        await propertyCheck(count: 150, input: words) { words in
            var engine = XenstoreEngine(quotas: Quotas(nodes: 12, watches: 3, transactions: 2, transactionNodes: 6))
            let ids = (0..<5).map { ConnectionID(UInt64($0)) }
            engine.connect(ids[0], domid: .dom0, privileged: true)
            for index in 1..<5 {
                engine.connect(ids[index], domid: DomID(UInt16(index)), privileged: false)
            }
            for word in words {
                let id = ids[Int(word % 5)]
                let kind = (word >> 3) % 32
                if kind == 29 {
                    _ = engine.domainShutdown(DomID(UInt16((word >> 8) % 4)))
                    continue
                }
                if kind == 30 {
                    engine.disconnect(id)
                    engine.connect(id, domid: DomID(UInt16(id.rawValue)), privileged: id.rawValue == 0)
                    continue
                }
                let type = UInt32(kind == 31 ? 0xFFFF : kind)
                let tx = UInt32((word >> 48) % 4 == 0 ? (word >> 50) % 3 : 0)
                let request = XenstoreMessage(
                    type: XenstoreMessageType(rawValue: type),
                    reqID: UInt32(truncatingIfNeeded: word >> 20),
                    txID: tx,
                    payload: Self.payload(word)
                )
                let effects = engine.handle(request, from: id)
                var replies = 0
                for effect in effects {
                    guard case .send(let to, let message) = effect else { continue }
                    #expect(message.fitsOnWire)
                    if message.type == .watchEvent {
                        #expect(message.reqID == 0 && message.txID == 0)
                        #expect(message.payload.filter { $0 == 0 }.count >= 2 && message.payload.last == 0)
                        continue
                    }
                    replies += 1
                    #expect(to == id)
                    #expect(message.reqID == request.reqID && message.txID == request.txID)
                    if message.type == .error {
                        let name = String(decoding: message.payload.dropLast(), as: UTF8.self)
                        #expect(message.payload.last == 0 && Self.names.contains(name), "bad error \(name)")
                    } else {
                        #expect(message.type == request.type)
                    }
                }
                #expect(replies == 1, "\(request) got \(effects)")
                #expect(engine.invariantViolations().isEmpty)
            }
        }
    }

    /// Committing a transaction that nobody interfered with gives the same tree as doing the
    /// same writes directly.
    @Test func uncontendedTransactionEqualsDirectWrites() async {
        let words = Gen.uint64(in: 0...UInt64.max).array(of: 1...30)
        await propertyCheck(count: 100, input: words) { words in
            var direct = Harness()
            var viaTx = Harness()
            let tx = viaTx.begin(C.d0)
            for word in words {
                let path = ["/p", "/p/a", "/p/b", "/p/a/c", "/q"][Int(word % 5)]
                let (type, payload): (XenstoreMessageType, String) =
                    switch (word >> 8) % 4 {
                    case 0: (.write, path + "\0" + String(word % 97))
                    case 1: (.mkdir, path + "\0")
                    case 2: (.rm, path + "\0")
                    default: (.setPerms, path + "\0n0\0r\(word % 3)\0")
                    }
                let a = direct.send(C.d0, type, payload)
                let b = viaTx.send(C.d0, type, payload, tx: tx)
                #expect(replyKind(a) == replyKind(b))
            }
            viaTx.ok(C.d0, .transactionEnd, "T\0", tx: tx)
            #expect(dump(direct.engine) == dump(viaTx.engine))
        }
    }
}

private func replyKind(_ effects: [XenstoreEffect]) -> [UInt8]? {
    for case .send(_, let message) in effects where message.type != .watchEvent {
        return message.type == .error ? message.payload : []
    }
    return nil
}

/// Every node as "path=value perms", pre-order.
private func dump(_ engine: XenstoreEngine) -> [String] {
    var lines: [String] = []
    func visit(_ path: String) {
        let value = String(decoding: engine.value(at: path) ?? [], as: UTF8.self)
        lines.append("\(path)=\(value) \(engine.permissions(of: path)?.description ?? "?")")
        for child in engine.children(of: path) ?? [] {
            visit(path == "/" ? "/\(child)" : "\(path)/\(child)")
        }
    }
    visit("/")
    return lines
}

/// ``XenstorePath/resolve(_:relativeTo:allowSpecial:pathLimit:)`` checks and splits a
/// path in one pass; this states the rules the slow, obvious way and compares.
@Suite("Path properties")
struct PathPropertyTests {
    /// Path characters, the separators that make paths malformed, and a few that are
    /// never allowed, so random strings hit every rule.
    static let alphabet = Array("a/b/0/9/-_@/ !.\u{0}é".utf8)  // the first nine make paths

    /// The rules of xenstore.txt and cxenstored's `is_valid_nodename`, written out.
    static func reference(_ bytes: [UInt8], base: String, allowSpecial: Bool, limit: Int) -> (String, [String])? {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/_@".utf8)
        guard let first = bytes.first, bytes.allSatisfy(allowed.contains) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        func wellFormed(_ path: String) -> Bool { path == "/" || (!path.contains("//") && !path.hasSuffix("/")) }
        if first == UInt8(ascii: "@") {
            return allowSpecial && bytes.count <= 2048 && wellFormed(text) ? (text, [text]) : nil
        }
        let full = first == UInt8(ascii: "/") ? text : base + "/" + text
        guard wellFormed(full), full.utf8.count <= 3072 else { return nil }
        var counted = full.utf8.count
        let parts = full.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count > 4, parts[1] == "local", parts[2] == "domain", (1...5).contains(parts[3].count),
            parts[3].allSatisfy(\.isNumber)
        {
            counted -= "/local/domain/".count + parts[3].count + 1
        }
        guard counted <= limit else { return nil }
        return (full, full.split(separator: "/").map(String.init))
    }

    @Test func resolvingAgreesWithTheRulesWrittenOut() async {
        let input = Gen.uint64(in: 0...UInt64.max).array(of: 0...40)
        await propertyCheck(count: 3000, input: input) { words in
            // Mostly the well-formed characters (a valid path is rarely drawn otherwise),
            // sometimes the whole alphabet; sometimes under this domain's home.
            var bytes = words.map { word in
                Self.alphabet[Int(word % UInt64(word & (1 << 50) != 0 ? Self.alphabet.count : 9))]
            }
            if (words.first ?? 0) & (1 << 41) != 0 { bytes = Array("/local/domain/7/".utf8) + bytes }
            let allowSpecial = (words.first ?? 0) & (1 << 40) != 0
            let limit = words.count.isMultiple(of: 3) ? 12 : 2048
            let base = XenstorePath(trusted: "/local/domain/7")
            let expected = Self.reference(bytes, base: base.rawValue, allowSpecial: allowSpecial, limit: limit)
            let resolved = try? XenstorePath.resolve(
                bytes,
                relativeTo: base,
                allowSpecial: allowSpecial,
                pathLimit: limit
            )
            #expect(resolved?.rawValue == expected?.0, "\(String(decoding: bytes, as: UTF8.self).debugDescription)")
            if let resolved, !resolved.isSpecial {
                #expect(resolved.components == expected?.1)
            }
        }
    }
}
