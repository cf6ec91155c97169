//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import PropertyBased
import Testing
import Toolstack

/// Characters weighted towards the ones the grammar cares about, so random
/// input reaches deep into the lexer and parser rather than failing at once.
private let syntaxCharacters: [Character] = Array(
    "abcz_09xX=+[],;#'\"\\\n\n  \t\r-().@AZé✓{}$`=,,"
)

private let configText = Gen.element(of: syntaxCharacters).map { $0! }.array(of: 0...120).map { String($0) }

@Suite("parser properties")
struct PropertyTests {
    /// Any text: the parser returns settings or a ConfigError, never traps,
    /// and an error points inside the file.
    @Test func parserNeverTrapsOnRandomText() async {
        await propertyCheck(count: 2000, input: configText) { text in
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).count
            switch parseResult(text) {
            case .success(let config):
                for setting in config.settings { #expect(setting.line >= 1 && setting.line <= lines) }
            case .failure(let error):
                #expect(error.line >= 1 && error.line <= lines + 1)
                #expect(!error.message.isEmpty)
                #expect(error.file == "r.cfg")
            }
            // The typed layer must not trap either, whatever the settings hold.
            _ = try? DomainConfiguration.parse(text, fileName: "r.cfg")
        }
    }

    /// Arbitrary bytes, including invalid UTF-8 and NULs.
    @Test func parserNeverTrapsOnRandomBytes() async {
        await propertyCheck(count: 1000, input: Gen<UInt8>.value(in: 0...255).array(of: 0...200)) { bytes in
            _ = try? XLConfig.parse(utf8: bytes, fileName: "b.cfg")
        }
    }

    /// Random channel specs and command lines: results or typed errors only.
    @Test func channelSpecsAndShellWordsNeverTrap() async {
        await propertyCheck(count: 1000, input: configText) { text in
            if let result = try? ChannelConfiguration.parse(spec: text, index: 0) {
                #expect(result.channel.devid == 1)
                #expect(result.channel.connection != nil)
            }
            if let words = try? ShellWords.split(text) {
                #expect(!words.contains { $0.contains("\n") && !text.contains("\n") })
            }
        }
    }

    /// Rendering random settings back to text and parsing gives them back:
    /// quoting and escaping are lossless for every printable and control ASCII.
    @Test func renderedSettingsRoundTrip() async {
        let key = Gen.element(of: Array("abcdefghijklmnopqrstuvwxyz_0123456789")).map { $0! }
            .array(of: 0...8).map { "k" + String($0) }
        let stringValue = Gen<UInt8>.value(in: 1...127).array(of: 0...20).map { bytes in
            String(decoding: bytes, as: UTF8.self)
        }
        await propertyCheck(count: 500, input: key.array(of: 1...6), stringValue.array(of: 1...6)) { keys, values in
            var text = ""
            var expected: [XLSetting] = []
            for (offset, (key, value)) in zip(keys, values).enumerated() {
                let asList = offset % 2 == 1
                let quoted = "\"" + escape(value) + "\""
                text += asList ? "\(key) = [\n  \(quoted),\n  42,\n]\n" : "\(key) = \(quoted) # note\n"
                let line =
                    text.split(separator: "\n", omittingEmptySubsequences: false).count
                    - (asList ? 4 : 1)
                expected.append(
                    XLSetting(
                        key: key,
                        value: asList ? .list([.string(value), .number("42")]) : .string(value),
                        line: line,
                        elementLines: asList ? [line + 1, line + 2] : []
                    )
                )
            }
            #expect((try? parseResult(text, fileName: "rt.cfg").get().settings) == expected)
        }
    }
}

private func parseResult(_ text: String, fileName: String = "r.cfg") -> Result<XLConfig, ConfigError> {
    do {
        return .success(try XLConfig.parse(text, fileName: fileName))
    } catch {
        return .failure(error)
    }
}

/// Escapes a string for an xl.cfg double-quoted literal.
private func escape(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16)
                out += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out
}
