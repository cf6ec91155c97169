//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import Toolstack

@Suite("xl.cfg lexer and parser")
struct LexerParserTests {
    @Test func simpleSettingsInOrder() throws {
        let config = try XLConfig.parse("name = \"h0\"\nmemory = 512\n", fileName: "a.cfg")
        #expect(
            config.settings == [
                XLSetting(key: "name", value: .string("h0"), line: 1),
                XLSetting(key: "memory", value: .number("512"), line: 2),
            ]
        )
    }

    @Test func semicolonSeparatesStatements() throws {
        let config = try XLConfig.parse("name=\"h0\"; type=\"hvm\";;\n;", fileName: "a.cfg")
        #expect(config.settings.map(\.key) == ["name", "type"])
        #expect(try config.value(for: "type") == .string("hvm"))
    }

    @Test func lastStatementNeedsNoNewline() throws {
        let config = try XLConfig.parse("vcpus = 2", fileName: "a.cfg")
        #expect(try config.value(for: "vcpus") == .number("2"))
    }

    @Test func emptyFileAndBlankLinesAndComments() throws {
        #expect(try XLConfig.parse("", fileName: "a.cfg").settings.isEmpty)
        let config = try XLConfig.parse(
            "\n\n# a comment\n   \t\nname = 'x' # trailing comment\n# last line without newline",
            fileName: "a.cfg"
        )
        #expect(config.settings == [XLSetting(key: "name", value: .string("x"), line: 5)])
    }

    @Test func hashInsideStringIsNotAComment() throws {
        let config = try XLConfig.parse("extra = \"a # b\"\n", fileName: "a.cfg")
        #expect(try config.value(for: "extra") == .string("a # b"))
    }

    @Test func singleAndDoubleQuotes() throws {
        let config = try XLConfig.parse(#"a = 'it"s'"# + "\n" + #"b = "it's""#, fileName: "a.cfg")
        #expect(try config.value(for: "a") == .string(#"it"s"#))
        #expect(try config.value(for: "b") == .string("it's"))
    }

    @Test(arguments: [
        (#"\""#, "\""), (#"\'"#, "'"), (#"\\"#, "\\"), (#"\a"#, "\u{07}"), (#"\b"#, "\u{08}"),
        (#"\f"#, "\u{0C}"), (#"\n"#, "\n"), (#"\r"#, "\r"), (#"\t"#, "\t"), (#"\v"#, "\u{0B}"),
        (#"\x41"#, "A"), (#"\x7a"#, "z"), (#"\101"#, "A"), (#"\7"#, "\u{07}"), (#"\0101"#, "\u{08}1"),
    ])
    func escapes(escape: String, decoded: String) throws {
        let config = try XLConfig.parse("s = \"<\(escape)>\"", fileName: "a.cfg")
        #expect(try config.value(for: "s") == .string("<\(decoded)>"))
    }

    @Test func nonASCIIInsideStrings() throws {
        let config = try XLConfig.parse("name = \"gäst-✓\"", fileName: "a.cfg")
        #expect(try config.value(for: "name") == .string("gäst-✓"))
    }

    @Test func numbersKeepTheirText() throws {
        let config = try XLConfig.parse("a = 0x1F\nb = 010\nc = 0\nd = 99999999999999999999999", fileName: "a.cfg")
        #expect(try config.value(for: "a") == .number("0x1F"))
        #expect(XLNumber.parse("0x1F") == 31)
        #expect(XLNumber.parse("010") == 8)
        #expect(XLNumber.parse("0") == 0)
        #expect(XLNumber.parse("-12") == -12)
        #expect(XLNumber.parse("99999999999999999999999") == nil)
        #expect(try config.value(for: "d") == .number("99999999999999999999999"))
    }

    @Test func multiLineListWithTrailingCommaAndComments() throws {
        let text = """
            channel = [
                "name=a, connection=pty",   # first
                # a comment line inside the list

                "name=b, connection=pty",
            ]
            memory = 64
            """
        let config = try XLConfig.parse(text, fileName: "a.cfg")
        let setting = try #require(config.lastSetting(for: "channel"))
        #expect(setting.value == .list([.string("name=a, connection=pty"), .string("name=b, connection=pty")]))
        #expect(setting.line == 1)
        #expect(setting.elementLines == [2, 5])
        #expect(try config.value(for: "memory") == .number("64"))
    }

    @Test func emptyAndNestedAndMixedLists() throws {
        let config = try XLConfig.parse("a = [ ]\nb = [\n]\nc = [ [\"x\", 1], 2, 'y' ]", fileName: "a.cfg")
        #expect(try config.value(for: "a") == .list([]))
        #expect(try config.value(for: "b") == .list([]))
        #expect(
            try config.value(for: "c") == .list([.list([.string("x"), .number("1")]), .number("2"), .string("y")])
        )
    }

    @Test func newlineBeforeCommaIsAllowed() throws {
        let config = try XLConfig.parse("a = [ 'x'\n , 'y' ]", fileName: "a.cfg")
        #expect(try config.value(for: "a") == .list([.string("x"), .string("y")]))
    }

    @Test func duplicateKeysLastWins() throws {
        let config = try XLConfig.parse("memory = 128\nmemory = 256\n", fileName: "a.cfg")
        #expect(try config.value(for: "memory") == .number("256"))
        #expect(config.lastSetting(for: "memory")?.line == 2)
        #expect(config.settings.count == 2)
    }

    @Test func plusEqualsConcatenates() throws {
        let config = try XLConfig.parse(
            "extra = 'a'\nextra += ' b'\nl = ['x']\nl += ['y', 'z']\nnew += 'n'",
            fileName: "a.cfg"
        )
        #expect(try config.value(for: "extra") == .string("a b"))
        #expect(try config.value(for: "l") == .list([.string("x"), .string("y"), .string("z")]))
        #expect(try config.value(for: "new") == .string("n"))
        #expect(config.elementLines(for: "l") == [3, 4, 4])
    }

    @Test func plusEqualsMixingKindsFails() throws {
        let mixed = try XLConfig.parse("l = ['x']\nl += 'y'", fileName: "a.cfg")
        #expect(
            throws: ConfigError(
                file: "a.cfg",
                line: 2,
                message: "can't add [list] to \"string\" or vice versa for parameter 'l'"
            )
        ) {
            _ = try mixed.value(for: "l")
        }
        let numbers = try XLConfig.parse("m = 5\nm += 12", fileName: "a.cfg")
        #expect(throws: ConfigError.self) { _ = try numbers.value(for: "m") }
    }

    // MARK: - Errors carry file, line and column

    @Test func missingEquals() throws {
        let error = try #require(lexError("memory = 64\nname \"x\"\n"))
        #expect(error.description == "guest.cfg:2: expected '=' after 'name', found the string \"x\"")
        #expect(error.column == 6)
    }

    @Test func missingValue() throws {
        let error = try #require(lexError("name =\nkernel = 'k'"))
        #expect(error.line == 1)
        #expect(error.message.hasPrefix("expected a value after '=' for 'name'"))
    }

    @Test func unterminatedStrings() throws {
        let double = try #require(lexError("a = 1\nname = \"abc\n"))
        #expect(double.description == "guest.cfg:2: unterminated string: close it with \" on the same line")
        #expect(double.column == 8)
        let single = try #require(lexError("name = 'abc"))
        #expect(single.message == "unterminated string: close it with ' on the same line")
    }

    @Test func badEscapes() throws {
        #expect(
            lexError(#"s = "\q""#)?.message
                == "invalid character after backslash in quoted string: use \\\\ for a backslash"
        )
        #expect(lexError(#"s = "\x4""#)?.message.hasPrefix("invalid \\x escape") == true)
        #expect(lexError(#"s = "\x00""#)?.message.hasPrefix("numeric escape") == true)
        #expect(lexError(#"s = "\xff""#)?.message.hasPrefix("numeric escape") == true)
    }

    @Test func unterminatedList() throws {
        let error = try #require(lexError("a = [ 'x',\n 'y'\n"))
        #expect(error.line == 3)
        #expect(error.message == "unterminated list for 'a': add ']' to close the '[' opened on line 1")
    }

    @Test func missingCommaInList() throws {
        let error = try #require(lexError("a = [ 'x' 'y' ]"))
        #expect(error.message == "expected ',' or ']' in the list for 'a', found the string \"y\"")
        #expect(error.column == 11)
    }

    @Test func doubleCommaInList() throws {
        #expect(lexError("a = [ 'x',, 'y' ]")?.message.hasPrefix("expected a value in the list for 'a'") == true)
        #expect(lexError("a = [ , ]")?.message.hasPrefix("expected a value in the list for 'a'") == true)
    }

    @Test func twoValuesOnOneLine() throws {
        let error = try #require(lexError("memory = 512 256"))
        #expect(
            error.message == "expected the end of the line or ';' after the value of 'memory', found the number 256"
        )
    }

    @Test func invalidNumbers() throws {
        #expect(lexError("memory = 512M")?.message.hasPrefix("invalid number '512M'") == true)
        #expect(lexError("memory = 08")?.message.hasPrefix("invalid number '08'") == true)
        #expect(lexError("memory = 0x")?.message.hasPrefix("invalid number '0x'") == true)
        #expect(lexError("memory = 1.5")?.message.hasPrefix("unexpected character '.'") == true)
    }

    @Test func uppercaseKeyIsRejectedWithHint() throws {
        let error = try #require(lexError("\nName = 'x'"))
        #expect(error.line == 2)
        #expect(error.message == "keys are written in lowercase: 'Name' is not a valid key (did you mean 'name'?)")
    }

    @Test func pythonLooksGetAHint() throws {
        let error = try #require(lexError("memory = (512)"))
        #expect(error.message.contains("not Python"))
        #expect(error.column == 10)
    }

    @Test func strayCharacterAndBareWords() throws {
        #expect(lexError("name = guest")?.message.hasPrefix("expected a value after '=' for 'name'") == true)
        #expect(lexError("= 5")?.message == "expected a setting (KEY = VALUE), found '='")
        #expect(lexError("a = 1\n@")?.description == "guest.cfg:2: unexpected character '@'")
        #expect(lexError("a = \u{01}")?.message == "unexpected character byte 0x1")
    }

    @Test func deepNestingIsRefusedNotCrashed() throws {
        let text = "a = " + String(repeating: "[", count: 10_000)
        let error = try #require(lexError(text))
        #expect(error.message.contains("nested too deeply"))
    }

    @Test func crlfLineEndingsAreAccepted() throws {
        let config = try XLConfig.parse("name = 'x'\r\nmemory = 64\r\n", fileName: "a.cfg")
        #expect(try config.value(for: "memory") == .number("64"))
    }

    @Test func invalidUTF8InStringIsAnError() throws {
        let bytes = Array("name = '".utf8) + [0xFF, 0xFE] + Array("'\n".utf8)
        #expect(throws: ConfigError(file: "b.cfg", line: 1, column: 8, message: "quoted string is not valid UTF-8")) {
            _ = try XLConfig.parse(utf8: bytes, fileName: "b.cfg")
        }
    }
}
