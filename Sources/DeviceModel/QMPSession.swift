//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation

/// The QEMU Machine Protocol as far as libxl uses it with a PV guest's device
/// model: a greeting, `qmp_capabilities`, `query-status` (with `-S`), `cont`,
/// `query-chardev` after start, `query-vnc`, `quit`. Messages are JSON objects;
/// libxl ends each with `\r\n` and expects the same.
///
/// A session is pure: bytes in, replies out. Input is a peer's (libxl's, or
/// anyone root let onto the socket): objects are split by a bounded scanner,
/// nothing is trusted to be well formed.
public struct QMPSession {
    /// What a command asked, and what to answer.
    public enum Answer {
        /// `{"return": value}`.
        case value(Any)
        /// `{"error": {"class": …, "desc": …}}`.
        case error(class: String, description: String)
    }

    /// The longest object accepted; beyond it the session ends.
    public static let maximumObject = 64 * 1024

    private var scanner = JSONObjectScanner(limit: QMPSession.maximumObject)
    private var negotiated = false
    private let handle: (_ command: String, _ arguments: [String: Any]) -> Answer

    public init(handle: @escaping (_ command: String, _ arguments: [String: Any]) -> Answer) {
        self.handle = handle
    }

    /// The greeting a server sends first (QEMU 7.2's version, Debian bookworm's:
    /// libxl compares versions for some features).
    public static func greeting() -> [UInt8] {
        encode([
            "QMP": [
                "version": ["qemu": ["major": 7, "minor": 2, "micro": 0], "package": "conch device model"],
                "capabilities": [String](),
            ]
        ])
    }

    /// Feeds bytes; returns the replies, and whether the peer should be dropped
    /// (an object too long or not JSON).
    public mutating func feed(_ bytes: [UInt8]) -> (replies: [UInt8], close: Bool) {
        var out: [UInt8] = []
        guard let objects = scanner.feed(bytes) else {
            out += Self.encode(["error": ["class": "GenericError", "desc": "message too long"]])
            return (out, true)
        }
        for object in objects {
            guard let message = try? JSONSerialization.jsonObject(with: Data(object)) as? [String: Any] else {
                out += Self.encode(["error": ["class": "GenericError", "desc": "JSON parse error"]])
                return (out, true)
            }
            out += reply(to: message)
        }
        return (out, false)
    }

    private mutating func reply(to message: [String: Any]) -> [UInt8] {
        var reply: [String: Any] = [:]
        if let id = message["id"] { reply["id"] = id }
        guard let command = message["execute"] as? String else {
            reply["error"] = ["class": "GenericError", "desc": "QMP input lacks member 'execute'"]
            return Self.encode(reply)
        }
        let arguments = message["arguments"] as? [String: Any] ?? [:]
        if command == "qmp_capabilities" {
            negotiated = true
            reply["return"] = [String: Any]()
            return Self.encode(reply)
        }
        guard negotiated else {
            reply["error"] = [
                "class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'",
            ]
            return Self.encode(reply)
        }
        switch handle(command, arguments) {
        case .value(let value): reply["return"] = value
        case .error(let errorClass, let description): reply["error"] = ["class": errorClass, "desc": description]
        }
        return Self.encode(reply)
    }

    static func encode(_ object: [String: Any]) -> [UInt8] {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Array(data) + Array("\r\n".utf8)
    }
}

/// Splits a byte stream into top-level JSON objects (`{…}`), aware of strings
/// and escapes; whitespace and newlines between objects are skipped. Returns nil
/// once an object grows past `limit` or a byte outside any object is not space.
struct JSONObjectScanner {
    let limit: Int
    private var current: [UInt8] = []
    private var depth = 0
    private var inString = false
    private var escaped = false

    init(limit: Int) { self.limit = limit }

    mutating func feed(_ bytes: [UInt8]) -> [[UInt8]]? {
        var objects: [[UInt8]] = []
        for byte in bytes {
            if depth == 0 {
                switch byte {
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"): continue
                case UInt8(ascii: "{"):
                    depth = 1
                    current = [byte]
                    continue
                default: return nil
                }
            }
            current.append(byte)
            guard current.count <= limit else { return nil }
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 {
                    objects.append(current)
                    current = []
                }
            default: break
            }
        }
        return objects
    }
}
