//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// A value on the right of `KEY = VALUE` in an xl.cfg file (xl.cfg(5), "SYNTAX").
///
/// As in libxlu, a number keeps the text it was written with: `0x200`, `01000`
/// and `512` are all valid and only the key that reads the value decides how to
/// interpret it (see ``XLNumber``). Lists may mix strings, numbers and lists.
///
/// JSON form: a string is a JSON string, a number is `{"number": "<text>"}`, a
/// list is a JSON array.
public indirect enum XLValue: Equatable, Sendable, Codable {
    case string(String)
    case number(String)
    case list([XLValue])

    /// The text of a string or number atom; nil for a list. libxlu treats both
    /// atom kinds as strings, so `name = 5` names the domain "5".
    public var atomText: String? {
        switch self {
        case .string(let text), .number(let text): text
        case .list: nil
        }
    }

    /// A short description for error messages.
    var kindDescription: String {
        switch self {
        case .string: "a string"
        case .number: "a number"
        case .list: "a list"
        }
    }

    private enum NumberKey: String, CodingKey { case number }

    public init(from decoder: any Decoder) throws {
        if let keyed = try? decoder.container(keyedBy: NumberKey.self) {
            self = .number(try keyed.decode(String.self, forKey: .number))
            return
        }
        if var unkeyed = try? decoder.unkeyedContainer() {
            var items: [XLValue] = []
            while !unkeyed.isAtEnd { items.append(try unkeyed.decode(XLValue.self)) }
            self = .list(items)
            return
        }
        self = .string(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .string(let text):
            var container = encoder.singleValueContainer()
            try container.encode(text)
        case .number(let text):
            var container = encoder.container(keyedBy: NumberKey.self)
            try container.encode(text, forKey: .number)
        case .list(let items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item) }
        }
    }
}

/// How a setting combines with an earlier setting of the same key.
public enum XLOperator: String, Equatable, Sendable, Codable {
    /// `KEY = VALUE`: replaces any earlier value (the last one wins, as in xl).
    case assign = "="
    /// `KEY += VALUE`: appends to the earlier string or list (libxlu's `+=`).
    case append = "+="
}

/// One `KEY = VALUE` statement, in file order.
public struct XLSetting: Equatable, Sendable, Codable {
    public var key: String
    public var op: XLOperator
    /// The value as written on this line (before any `+=` concatenation).
    public var value: XLValue
    /// 1-based line of the value's first token.
    public var line: Int
    /// For a list value, the 1-based line of each top-level element, so that
    /// a problem in one element of a multi-line list points at its own line.
    public var elementLines: [Int]

    public init(key: String, op: XLOperator = .assign, value: XLValue, line: Int, elementLines: [Int] = []) {
        self.key = key
        self.op = op
        self.value = value
        self.line = line
        self.elementLines = elementLines
    }
}

/// A parsed xl.cfg file: the settings in order, with libxlu's lookup rules.
///
/// Parsing checks only the lexical format and grammar; what each key means is
/// decided by ``DomainConfiguration/parse(_:fileName:)``.
public struct XLConfig: Equatable, Sendable, Codable {
    /// The name used in diagnostics (usually the file name).
    public var fileName: String
    /// Every statement in file order, including ones later overridden.
    public var settings: [XLSetting]

    public init(fileName: String, settings: [XLSetting]) {
        self.fileName = fileName
        self.settings = settings
    }

    /// Lists deeper than this are refused: nothing in xl.cfg nests more than
    /// two levels (vnuma), and the limit keeps hostile input from exhausting
    /// the stack of the recursive-descent parser.
    public static let maximumListDepth = 32

    /// Parses xl.cfg text.
    ///
    /// Grammar (libxlu): statements are `KEY = VALUE` or `KEY += VALUE`,
    /// separated by newlines or `;`; empty statements are allowed; the last
    /// statement needs no terminator. A VALUE is a quoted string, a number or
    /// `[ VALUE, ... ]`; lists may span lines, may be empty and may end with a
    /// comma. `#` starts a comment that runs to the end of the line.
    ///
    /// - Throws: ``ConfigError`` at the first problem, with its line and column.
    public static func parse(_ text: String, fileName: String) throws(ConfigError) -> XLConfig {
        try parse(utf8: Array(text.utf8), fileName: fileName)
    }

    /// Parses xl.cfg bytes (as read from a file); see ``parse(_:fileName:)``.
    public static func parse(utf8 bytes: [UInt8], fileName: String) throws(ConfigError) -> XLConfig {
        var parser = XLParser(lexer: XLLexer(bytes: bytes, file: fileName), file: fileName)
        return XLConfig(fileName: fileName, settings: try parser.parseFile())
    }

    /// The effective value of `key` with xl's rules: the last `=` wins, and
    /// each later `+=` appends to it (string to string, list to list).
    ///
    /// - Returns: nil when the key is absent.
    /// - Throws: ``ConfigError`` when `+=` mixes a list and a string or
    ///   involves a number (libxlu refuses both).
    public func value(for key: String) throws(ConfigError) -> XLValue? {
        var current: XLValue?
        for setting in settings where setting.key == key {
            guard setting.op == .append, let previous = current else {
                current = setting.value
                continue
            }
            switch (previous, setting.value) {
            case (.string(let a), .string(let b)):
                current = .string(a + b)
            case (.list(let a), .list(let b)):
                current = .list(a + b)
            case (.number, _), (_, .number):
                throw ConfigError(
                    file: fileName,
                    line: setting.line,
                    message: "can't use += with numbers for parameter '\(key)': write the whole value with '='"
                )
            default:
                throw ConfigError(
                    file: fileName,
                    line: setting.line,
                    message: "can't add [list] to \"string\" or vice versa for parameter '\(key)'"
                )
            }
        }
        return current
    }

    /// The last setting of `key` (the one whose line diagnostics should cite).
    public func lastSetting(for key: String) -> XLSetting? {
        settings.last { $0.key == key }
    }

    /// The line of each element of the effective list value of `key`, taking
    /// `+=` appends into account; 0 where unknown.
    public func elementLines(for key: String) -> [Int] {
        var lines: [Int] = []
        for setting in settings where setting.key == key {
            if setting.op == .assign { lines = [] }
            lines += setting.elementLines
        }
        return lines
    }

    /// Keys in order of first appearance, each once.
    public var keys: [String] {
        var seen = Set<String>()
        return settings.compactMap { seen.insert($0.key).inserted ? $0.key : nil }
    }
}

/// Recursive-descent parser over ``XLLexer`` tokens.
struct XLParser {
    private var lexer: XLLexer
    private let file: String
    private var lookahead: XLToken?

    init(lexer: XLLexer, file: String) {
        self.lexer = lexer
        self.file = file
    }

    private mutating func peek() throws(ConfigError) -> XLToken {
        if let token = lookahead { return token }
        let token = try lexer.next()
        lookahead = token
        return token
    }

    private mutating func advance() throws(ConfigError) -> XLToken {
        let token = try peek()
        lookahead = nil
        return token
    }

    private func error(_ message: String, at token: XLToken) -> ConfigError {
        ConfigError(file: file, line: token.line, column: token.column, message: message)
    }

    mutating func parseFile() throws(ConfigError) -> [XLSetting] {
        var settings: [XLSetting] = []
        while true {
            let token = try advance()
            switch token.kind {
            case .end:
                return settings
            case .newline, .semicolon:
                continue
            case .identifier(let key):
                settings.append(try parseAssignment(key: key, keyToken: token))
            default:
                throw error("expected a setting (KEY = VALUE), found \(token.quoted)", at: token)
            }
        }
    }

    private mutating func parseAssignment(key: String, keyToken: XLToken) throws(ConfigError) -> XLSetting {
        let opToken = try advance()
        let op: XLOperator
        switch opToken.kind {
        case .equals: op = .assign
        case .plusEquals: op = .append
        default:
            throw error("expected '=' after '\(key)', found \(opToken.quoted)", at: opToken)
        }
        let valueToken = try peek()
        var elementLines: [Int] = []
        let value = try parseValue(key: key, depth: 0, elementLines: &elementLines)
        let terminator = try peek()
        switch terminator.kind {
        case .newline, .semicolon, .end:
            break
        default:
            throw error(
                "expected the end of the line or ';' after the value of '\(key)', found \(terminator.quoted)",
                at: terminator
            )
        }
        return XLSetting(key: key, op: op, value: value, line: valueToken.line, elementLines: elementLines)
    }

    private mutating func skipNewlines() throws(ConfigError) {
        while try peek().kind == .newline { _ = try advance() }
    }

    private mutating func parseValue(
        key: String,
        depth: Int,
        elementLines: inout [Int]
    ) throws(ConfigError)
        -> XLValue
    {
        let token = try advance()
        switch token.kind {
        case .string(let text):
            return .string(text)
        case .number(let text):
            return .number(text)
        case .leftBracket:
            guard depth < XLConfig.maximumListDepth else {
                throw error(
                    "lists are nested too deeply in '\(key)' (more than \(XLConfig.maximumListDepth) levels)",
                    at: token
                )
            }
            return try parseList(key: key, open: token, depth: depth + 1, elementLines: &elementLines)
        default:
            let what = depth == 0 ? "after '=' for '\(key)'" : "in the list for '\(key)'"
            throw error(
                "expected a value \(what) (a quoted string, a number or a [ list ]), found \(token.quoted)",
                at: token
            )
        }
    }

    private mutating func parseList(
        key: String,
        open: XLToken,
        depth: Int,
        elementLines: inout [Int]
    )
        throws(ConfigError) -> XLValue
    {
        var items: [XLValue] = []
        var nestedLines: [Int] = []
        try skipNewlines()
        while true {
            let token = try peek()
            switch token.kind {
            case .rightBracket:
                _ = try advance()
                return .list(items)
            case .end:
                throw error(
                    "unterminated list for '\(key)': add ']' to close the '[' opened on line \(open.line)",
                    at: token
                )
            default:
                break
            }
            if depth == 1 { elementLines.append(token.line) }
            items.append(try parseValue(key: key, depth: depth, elementLines: &nestedLines))
            try skipNewlines()
            let separator = try advance()
            switch separator.kind {
            case .comma:
                // A trailing comma before ']' is allowed, as in libxlu.
                try skipNewlines()
            case .rightBracket:
                return .list(items)
            case .end:
                throw error(
                    "unterminated list for '\(key)': add ']' to close the '[' opened on line \(open.line)",
                    at: separator
                )
            default:
                throw error("expected ',' or ']' in the list for '\(key)', found \(separator.quoted)", at: separator)
            }
        }
    }
}
