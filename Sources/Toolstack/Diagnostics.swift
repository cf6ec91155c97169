//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// A fatal problem in an xl.cfg file: the file cannot be used as written.
///
/// Config files are untrusted input, so every problem is reported as a value,
/// never a trap. The text always names the file and line (when there is one),
/// says what is wrong and, where the fix is obvious, what to write instead.
/// ``description`` follows xl's `file:line: message` layout so editors can jump
/// to the spot.
public struct ConfigError: Error, Equatable, Sendable, Codable, CustomStringConvertible {
    /// The name the caller gave the configuration (usually the file name).
    public var file: String
    /// 1-based line of the problem; 0 when the problem concerns the whole file
    /// (for example a mandatory key that is missing).
    public var line: Int
    /// 1-based column (in bytes) where the offending token starts, when known.
    public var column: Int?
    /// What is wrong, and how to fix it where that is obvious.
    public var message: String
    /// The warnings reading produced before it stopped here (an unknown key, say),
    /// so that they are shown even though the file cannot be used.
    public var warnings: [ConfigWarning]

    public init(file: String, line: Int, column: Int? = nil, message: String, warnings: [ConfigWarning] = []) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        self.warnings = warnings
    }

    /// `file:line: message`, or `file: message` when no line applies.
    public var description: String {
        line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)"
    }
}

/// A non-fatal remark about an xl.cfg file (an ignored key, a deprecated form).
///
/// Warnings are returned next to the parsed configuration rather than printed,
/// so that the pure core never does I/O; the caller decides where they go.
public struct ConfigWarning: Equatable, Sendable, Codable, CustomStringConvertible {
    public var file: String
    /// 1-based line, or 0 when the warning concerns the whole file.
    public var line: Int
    public var message: String

    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    /// `file:line: warning: message`, as libxlu formats its own warnings.
    public var description: String {
        line > 0 ? "\(file):\(line): warning: \(message)" : "\(file): warning: \(message)"
    }
}

/// A configuration that parsed but that libxl would refuse to build, or that
/// cannot run under Conch (see ``DomainConfiguration/validate()`` and
/// ``DomainPlan``). The message is libxl's own where libxl has one.
public struct DomainValidationError: Error, Equatable, Sendable, Codable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// "Did you mean" for a misspelt name: the closest candidate within two edits
/// (insertions, deletions, substitutions or swaps of neighbours), if exactly one
/// is that close.
public enum NearMiss {
    public static func closest(to word: String, among candidates: some Sequence<String>) -> String? {
        let limit = word.count <= 3 ? 1 : 2
        var best: (name: String, distance: Int)?
        var tie = false
        for candidate in candidates {
            let distance = editDistance(Array(word.lowercased().utf8), Array(candidate.utf8))
            guard distance <= limit else { continue }
            if best == nil || distance < best!.distance {
                best = (candidate, distance)
                tie = false
            } else if distance == best!.distance {
                tie = true
            }
        }
        return tie ? nil : best?.name
    }

    /// Optimal string alignment distance (Levenshtein plus adjacent swaps).
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previous2[j - 2] + 1)
                }
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }
}
