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

    public init(file: String, line: Int, column: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
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
