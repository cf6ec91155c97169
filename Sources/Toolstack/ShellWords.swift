//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// Splits a command line into words with the quoting rules of the POSIX shell
/// (XCU 2.2 "Quoting" and 2.6.5 "Field Splitting"), without any expansion.
///
/// Conch runs the guest's "kernel" as a host program, so `cmdline` / `extra`
/// become its argument vector; users write them as they would in a shell:
///
/// - Unquoted blanks (space, tab, newline) separate words; runs of them count once.
/// - `'…'` keeps everything literally up to the next `'`.
/// - `"…"` keeps everything literally except that a backslash escapes `$`,
///   `` ` ``, `"`, `\` and newline (removed as a line continuation); before any
///   other character the backslash stays.
/// - Outside quotes a backslash makes the next character literal;
///   backslash-newline is a line continuation and disappears.
/// - `""` and `''` produce an empty word.
///
/// Not done (deliberately, there is no shell): parameter, command, arithmetic
/// and tilde expansion, globbing, `#` comments and operators such as `|`, `;`,
/// `>`; those characters are kept literally.
public enum ShellWords {
    /// Why a command line could not be split.
    public enum SplitError: Error, Equatable, Sendable, CustomStringConvertible {
        /// A `'` was opened at this 0-based character offset and never closed.
        case unterminatedSingleQuote(offset: Int)
        /// A `"` was opened at this 0-based character offset and never closed.
        case unterminatedDoubleQuote(offset: Int)
        /// The text ends with a backslash that escapes nothing.
        case trailingBackslash

        public var description: String {
            switch self {
            case .unterminatedSingleQuote(let offset):
                "unterminated single quote (opened at character \(offset + 1)): add the closing '"
            case .unterminatedDoubleQuote(let offset):
                "unterminated double quote (opened at character \(offset + 1)): add the closing \""
            case .trailingBackslash:
                "the command line ends with a backslash that escapes nothing: remove it or write \\\\"
            }
        }
    }

    /// Splits `text` into words; see the type's documentation for the rules.
    public static func split(_ text: String) throws(SplitError) -> [String] {
        var words: [String] = []
        var current = ""
        // A word exists once any character or quote has been seen, so that
        // `''` yields an empty word while plain blanks yield none.
        var inWord = false
        let characters = Array(text.unicodeScalars)
        var index = 0
        while index < characters.count {
            let scalar = characters[index]
            switch scalar {
            case " ", "\t", "\n":
                if inWord {
                    words.append(current)
                    current = ""
                    inWord = false
                }
                index += 1
            case "'":
                let open = index
                index += 1
                while index < characters.count, characters[index] != "'" {
                    current.unicodeScalars.append(characters[index])
                    index += 1
                }
                guard index < characters.count else { throw .unterminatedSingleQuote(offset: open) }
                index += 1
                inWord = true
            case "\"":
                let open = index
                index += 1
                var closed = false
                while index < characters.count {
                    let inner = characters[index]
                    if inner == "\"" {
                        closed = true
                        index += 1
                        break
                    }
                    if inner == "\\", index + 1 < characters.count {
                        let next = characters[index + 1]
                        switch next {
                        case "$", "`", "\"", "\\":
                            current.unicodeScalars.append(next)
                            index += 2
                            continue
                        case "\n":
                            index += 2
                            continue
                        default:
                            break
                        }
                    }
                    current.unicodeScalars.append(inner)
                    index += 1
                }
                guard closed else { throw .unterminatedDoubleQuote(offset: open) }
                inWord = true
            case "\\":
                guard index + 1 < characters.count else { throw .trailingBackslash }
                let next = characters[index + 1]
                index += 2
                if next == "\n" { continue }
                current.unicodeScalars.append(next)
                inWord = true
            default:
                current.unicodeScalars.append(scalar)
                inWord = true
                index += 1
            }
        }
        if inWord { words.append(current) }
        return words
    }
}
