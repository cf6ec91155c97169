//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

// Tokeniser for the xl.cfg lexical format (xl.cfg(5), libxlu's flex scanner).
// It works on UTF-8 bytes, as libxlu does; only quoted strings may contain
// non-ASCII bytes. Every failure is a ConfigError, never a trap.

/// One lexical token with the position where it starts.
struct XLToken: Equatable {
    enum Kind: Equatable {
        /// A key: a lowercase letter, then lowercase letters, digits or `_`.
        case identifier(String)
        /// A quoted string, with its escapes already decoded.
        case string(String)
        /// A number exactly as written (`512`, `0x200`, `01000`).
        case number(String)
        case equals
        case plusEquals
        case semicolon
        case comma
        case leftBracket
        case rightBracket
        /// End of line; a `#` comment is folded into the newline that ends it.
        case newline
        case end
    }

    var kind: Kind
    var line: Int
    var column: Int

    /// How the token reads in an error message.
    var quoted: String {
        switch kind {
        case .identifier(let name): "'\(name)'"
        case .string(let text): "the string \"\(text)\""
        case .number(let text): "the number \(text)"
        case .equals: "'='"
        case .plusEquals: "'+='"
        case .semicolon: "';'"
        case .comma: "','"
        case .leftBracket: "'['"
        case .rightBracket: "']'"
        case .newline: "the end of the line"
        case .end: "the end of the file"
        }
    }
}

struct XLLexer {
    private let bytes: [UInt8]
    private let file: String
    private var index = 0
    private var line = 1
    private var lineStart = 0

    init(bytes: [UInt8], file: String) {
        self.bytes = bytes
        self.file = file
    }

    private var column: Int { index - lineStart + 1 }

    private func peek(_ offset: Int = 0) -> UInt8? {
        let position = index + offset
        return position < bytes.count ? bytes[position] : nil
    }

    private func error(_ message: String, line: Int? = nil, column: Int? = nil) -> ConfigError {
        ConfigError(file: file, line: line ?? self.line, column: column ?? self.column, message: message)
    }

    /// Returns the next token; `.end` forever once the input is exhausted.
    mutating func next() throws(ConfigError) -> XLToken {
        // Blanks separate tokens. A CR is treated as a blank so that files
        // written on Windows work (libxlu would call it a lexical error).
        while let byte = peek(), byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == 0x0D {
            index += 1
        }
        let startLine = line
        let startColumn = column
        func token(_ kind: XLToken.Kind) -> XLToken { XLToken(kind: kind, line: startLine, column: startColumn) }

        guard let byte = peek() else { return token(.end) }
        switch byte {
        case UInt8(ascii: "\n"):
            index += 1
            line += 1
            lineStart = index
            return token(.newline)
        case UInt8(ascii: "#"):
            // A comment runs to the end of the line and stands for that newline.
            // At the very end of the file a comment needs no newline (libxlu's
            // scanner insists on one; demanding it helps nobody).
            while let next = peek(), next != UInt8(ascii: "\n") { index += 1 }
            if peek() != nil {
                index += 1
                line += 1
                lineStart = index
            }
            return token(.newline)
        case UInt8(ascii: "="):
            index += 1
            return token(.equals)
        case UInt8(ascii: "+") where peek(1) == UInt8(ascii: "="):
            index += 2
            return token(.plusEquals)
        case UInt8(ascii: ";"):
            index += 1
            return token(.semicolon)
        case UInt8(ascii: ","):
            index += 1
            return token(.comma)
        case UInt8(ascii: "["):
            index += 1
            return token(.leftBracket)
        case UInt8(ascii: "]"):
            index += 1
            return token(.rightBracket)
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            return token(.string(try lexString()))
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            return token(.number(try lexNumber()))
        case UInt8(ascii: "a")...UInt8(ascii: "z"):
            return token(.identifier(lexIdentifier()))
        case UInt8(ascii: "A")...UInt8(ascii: "Z"):
            let word = lexWord()
            throw error(
                "keys are written in lowercase: '\(word)' is not a valid key (did you mean '\(word.lowercased())'?)",
                line: startLine,
                column: startColumn
            )
        default:
            throw unexpected(byte, line: startLine, column: startColumn)
        }
    }

    private func unexpected(_ byte: UInt8, line: Int, column: Int) -> ConfigError {
        let shown: String
        if byte >= 0x21 && byte < 0x7F {
            shown = "'\(Character(Unicode.Scalar(byte)))'"
        } else {
            shown = "byte 0x" + String(byte, radix: 16, uppercase: true)
        }
        // libxlu flags these characters as a sign of an old Python-style config.
        let pythonish = Array("+-.():".utf8).contains(byte)
        let hint =
            pythonish
            ? ": xl config files are not Python; write KEY = VALUE with quoted strings and [ ] lists (see xl.cfg(5))"
            : ""
        return error("unexpected character \(shown)\(hint)", line: line, column: column)
    }

    private mutating func lexIdentifier() -> String {
        let start = index
        while let byte = peek(),
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "_")
        {
            index += 1
        }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    /// Consumes letters, digits and `_` for an error message about a bad word.
    private mutating func lexWord() -> String {
        let start = index
        while let byte = peek(), isWordByte(byte) { index += 1 }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    private func isWordByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_")
    }

    /// A number is kept as written; libxlu stores numbers as text too and only
    /// interprets them (strtol, base 0) when a key asks for a number. The shape
    /// is checked here so that `512M` or `08` fail early with a clear message.
    private mutating func lexNumber() throws(ConfigError) -> String {
        let startColumn = column
        let text = lexWord()
        guard XLNumber.parse(text) != nil || XLNumber.isWellFormedButTooLarge(text) else {
            throw error(
                "invalid number '\(text)': write a decimal (512), hexadecimal (0x200) or octal (01000) integer "
                    + "without a unit",
                column: startColumn
            )
        }
        return text
    }

    /// Decodes a quoted string. Strings end on the same line; the escapes are
    /// libxlu's: `\" \' \\ \a \b \f \n \r \t \v`, `\xHH` and octal `\ooo`.
    private mutating func lexString() throws(ConfigError) -> String {
        let quote = bytes[index]
        let openColumn = column
        index += 1
        var decoded: [UInt8] = []
        while true {
            guard let byte = peek(), byte != UInt8(ascii: "\n") else {
                let mark = quote == UInt8(ascii: "\"") ? "\"" : "'"
                throw error(
                    "unterminated string: close it with \(mark) on the same line",
                    column: openColumn
                )
            }
            index += 1
            if byte == quote { break }
            guard byte == UInt8(ascii: "\\") else {
                decoded.append(byte)
                continue
            }
            let escapeColumn = column - 1
            guard let escaped = peek(), escaped != UInt8(ascii: "\n") else {
                throw error("unterminated string: a backslash ends the line", column: escapeColumn)
            }
            index += 1
            switch escaped {
            case UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "\\"): decoded.append(escaped)
            case UInt8(ascii: "a"): decoded.append(0x07)
            case UInt8(ascii: "b"): decoded.append(0x08)
            case UInt8(ascii: "f"): decoded.append(0x0C)
            case UInt8(ascii: "n"): decoded.append(0x0A)
            case UInt8(ascii: "r"): decoded.append(0x0D)
            case UInt8(ascii: "t"): decoded.append(0x09)
            case UInt8(ascii: "v"): decoded.append(0x0B)
            case UInt8(ascii: "x"):
                var value: UInt32 = 0
                var digits = 0
                while digits < 2, let hex = peek(), let digit = hexValue(hex) {
                    value = value * 16 + digit
                    digits += 1
                    index += 1
                }
                guard digits == 2 else {
                    throw error(
                        "invalid \\x escape in quoted string: write exactly two hex digits, e.g. \\x41",
                        column: escapeColumn
                    )
                }
                try appendEscapedByte(value, to: &decoded, column: escapeColumn)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var value = UInt32(escaped - UInt8(ascii: "0"))
                var digits = 1
                while digits < 3, let octal = peek(), (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(octal) {
                    value = value * 8 + UInt32(octal - UInt8(ascii: "0"))
                    digits += 1
                    index += 1
                }
                try appendEscapedByte(value, to: &decoded, column: escapeColumn)
            default:
                throw error(
                    "invalid character after backslash in quoted string: use \\\\ for a backslash",
                    column: escapeColumn
                )
            }
        }
        guard let text = String(validating: decoded, as: UTF8.self) else {
            throw error("quoted string is not valid UTF-8", column: openColumn)
        }
        return text
    }

    /// Numeric escapes may only produce printable-or-control ASCII: a NUL cannot
    /// live in a C string, and a lone byte above 0x7F is not valid UTF-8.
    private func appendEscapedByte(_ value: UInt32, to decoded: inout [UInt8], column: Int) throws(ConfigError) {
        guard value >= 1, value <= 0x7F, let byte = UInt8(exactly: value) else {
            throw error(
                "numeric escape in quoted string must give an ASCII character from \\x01 to \\x7f",
                column: column
            )
        }
        decoded.append(byte)
    }

    private func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}

/// Integer reading with C `strtol(…, 0)` conventions: `0x` hexadecimal, a
/// leading `0` octal, decimal otherwise; an optional sign is allowed for values
/// that arrive as strings. Overflow and junk give nil rather than a trap.
public enum XLNumber {
    /// Parses a whole string as an integer, or returns nil.
    public static func parse(_ text: String) -> Int64? {
        var utf8 = Substring(text).utf8[...]
        var negative = false
        if let first = utf8.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            negative = first == UInt8(ascii: "-")
            utf8 = utf8.dropFirst()
        }
        guard !utf8.isEmpty else { return nil }
        var radix: Int64 = 10
        if utf8.count > 2, utf8.first == UInt8(ascii: "0"),
            utf8.dropFirst().first == UInt8(ascii: "x") || utf8.dropFirst().first == UInt8(ascii: "X")
        {
            radix = 16
            utf8 = utf8.dropFirst(2)
        } else if utf8.count > 1, utf8.first == UInt8(ascii: "0") {
            radix = 8
            utf8 = utf8.dropFirst()
        }
        var value: Int64 = 0
        for byte in utf8 {
            let digit: Int64
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = Int64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = Int64(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = Int64(byte - UInt8(ascii: "A") + 10)
            default: return nil
            }
            guard digit < radix else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: radix)
            let (sum, overflow2) = shifted.addingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return negative ? -value : value
    }

    /// True for digit strings of the right shape whose value does not fit in
    /// 64 bits: the lexer accepts them (libxlu would), and the key that reads
    /// them reports the range problem with its own name.
    static func isWellFormedButTooLarge(_ text: String) -> Bool {
        let utf8 = Array(text.utf8)
        guard !utf8.isEmpty else { return false }
        if utf8.count > 2, utf8[0] == UInt8(ascii: "0"), utf8[1] == UInt8(ascii: "x") || utf8[1] == UInt8(ascii: "X") {
            return utf8.dropFirst(2).allSatisfy { byte in
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
                    || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
            }
        }
        let digits: ClosedRange<UInt8> =
            utf8[0] == UInt8(ascii: "0") ? UInt8(ascii: "0")...UInt8(ascii: "7") : UInt8(ascii: "0")...UInt8(ascii: "9")
        return utf8.allSatisfy { digits.contains($0) }
    }
}
