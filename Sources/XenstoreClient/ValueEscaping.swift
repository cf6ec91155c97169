//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// How Xen's `xenstore-*` tools print and parse possibly-binary values, so that
/// `conch store` output is interchangeable with theirs.
///
/// Printing: printable ASCII other than backslash as is; `\t`, `\n`, `\r`, `\\`;
/// bytes below 8 as a three-digit octal escape (`\001`); any other byte as `\xHH`.
/// Parsing accepts the same escapes (octal up to three digits, hex up to two).
public enum XenstoreValueEscaping {
    public static func escape(_ value: some Sequence<UInt8>) -> String {
        var text = ""
        for byte in value {
            switch byte {
            case UInt8(ascii: "\\"): text += "\\\\"
            case 0x20...0x7e: text.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "\t"): text += "\\t"
            case UInt8(ascii: "\n"): text += "\\n"
            case UInt8(ascii: "\r"): text += "\\r"
            case 0..<8: text += "\\00\(byte)"
            default:
                let digits = Array("0123456789abcdef")
                text += "\\x\(digits[Int(byte >> 4)])\(digits[Int(byte & 15)])"
            }
        }
        return text
    }

    public static func unescape(_ text: String) -> [UInt8] {
        let input = Array(text.utf8)
        var output: [UInt8] = []
        var index = 0
        func digits(radix: UInt8, max: Int) -> UInt8? {
            var value = 0
            var count = 0
            while count < max, index < input.count, let digit = digitValue(input[index], radix: radix) {
                value = value * Int(radix) + Int(digit)
                index += 1
                count += 1
            }
            return count == 0 ? nil : UInt8(truncatingIfNeeded: value)
        }
        while index < input.count {
            let byte = input[index]
            index += 1
            guard byte == UInt8(ascii: "\\"), index < input.count else {
                // A trailing lone backslash becomes a NUL byte, as in libxenstore.
                output.append(byte == UInt8(ascii: "\\") ? 0 : byte)
                continue
            }
            let escape = input[index]
            index += 1
            switch escape {
            case UInt8(ascii: "t"): output.append(UInt8(ascii: "\t"))
            case UInt8(ascii: "n"): output.append(UInt8(ascii: "\n"))
            case UInt8(ascii: "r"): output.append(UInt8(ascii: "\r"))
            case UInt8(ascii: "x"): output.append(digits(radix: 16, max: 2) ?? UInt8(ascii: "x"))
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                index -= 1
                output.append(digits(radix: 8, max: 3) ?? 0)
            default: output.append(escape)
            }
        }
        return output
    }

    private static func digitValue(_ byte: UInt8, radix: UInt8) -> UInt8? {
        let value: UInt8
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): value = byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): value = byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): value = byte - UInt8(ascii: "A") + 10
        default: return nil
        }
        return value < radix ? value : nil
    }
}
