//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import Toolstack

@Suite("POSIX shell-word splitting")
struct ShellWordsTests {
    @Test(arguments: [
        ("", [String]()),
        ("   \t\n ", []),
        ("a b  c", ["a", "b", "c"]),
        ("  --verbose  ", ["--verbose"]),
        ("'hello world' x", ["hello world", "x"]),
        (#""hello world" x"#, ["hello world", "x"]),
        ("a'b c'd", ["ab cd"]),
        (#"'it'\''s'"#, ["it's"]),
        (#""a\"b""#, [#"a"b"#]),
        (#""a\\b""#, [#"a\b"#]),
        (#""a\$b\`c""#, ["a$b`c"]),
        (#""a\nb""#, [#"a\nb"#]),
        (#"'a\nb'"#, [#"a\nb"#]),
        (#"a\ b"#, ["a b"]),
        (#"\"x\""#, [#""x""#]),
        ("a\\\nb", ["ab"]),
        ("\"a\\\nb\"", ["ab"]),
        ("'' \"\" x", ["", "", "x"]),
        ("$HOME *.txt ~ a|b #c", ["$HOME", "*.txt", "~", "a|b", "#c"]),
        ("é 'ü x'", ["é", "ü x"]),
    ])
    func splits(text: String, words: [String]) throws {
        #expect(try ShellWords.split(text) == words)
    }

    @Test func unterminatedQuotes() {
        #expect(throws: ShellWords.SplitError.unterminatedSingleQuote(offset: 2)) { try ShellWords.split("a 'b c") }
        #expect(throws: ShellWords.SplitError.unterminatedDoubleQuote(offset: 0)) { try ShellWords.split("\"b c") }
        #expect(throws: ShellWords.SplitError.unterminatedDoubleQuote(offset: 0)) { try ShellWords.split(#""a\""#) }
        #expect(throws: ShellWords.SplitError.trailingBackslash) { try ShellWords.split("a\\") }
    }

    @Test func errorMessagesSayHowToFix() {
        #expect(
            ShellWords.SplitError.unterminatedSingleQuote(offset: 2).description
                == "unterminated single quote (opened at character 3): add the closing '"
        )
    }
}
