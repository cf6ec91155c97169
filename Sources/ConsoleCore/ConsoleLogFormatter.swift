//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// A calendar time already broken down by the caller (consoled uses local time,
/// as xenconsoled does). Fields are printed as given: out-of-range values are not
/// corrected, and nothing here traps on them.
public struct LogTimestamp: Sendable, Hashable {
    public var year: Int
    public var month: Int
    public var day: Int
    public var hour: Int
    public var minute: Int
    public var second: Int

    public init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
    }

    /// `[YYYY-MM-DD HH:MM:SS] `, e.g. `[2026-08-01 09:05:07] `: the line prefix of a
    /// timestamped log.
    public var prefix: String {
        "[\(Self.pad(year, 4))-\(Self.pad(month, 2))-\(Self.pad(day, 2)) "
            + "\(Self.pad(hour, 2)):\(Self.pad(minute, 2)):\(Self.pad(second, 2))] "
    }

    /// Zero-pads to `width` digits; a negative value keeps its sign in front.
    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value.magnitude)
        let zeros = String(repeating: "0", count: max(0, width - digits.count))
        return (value < 0 ? "-" : "") + zeros + digits
    }
}

/// Turns console output into log file bytes, one instance per open log stream.
///
/// Without timestamps the log is byte-identical to the guest's output (except ESC
/// with `replaceEscape`). With timestamps:
///
/// - every line starts with ``LogTimestamp/prefix``. The prefix is written when the
///   line's *first byte* arrives, so it says when the line began, and a final
///   newline does not leave a dangling prefix behind it;
/// - one `\r` directly after a `\n` is dropped, as xenconsoled does for guests that
///   end lines with LF CR (CR LF endings are kept as they are);
/// - state carries across calls: a line split over several writes gets one
///   prefix, and a `\r` arriving in the call after its `\n` is still dropped.
///
/// ```
/// t = [2026-08-01 09:05:07]
/// format("boot", t)      → "[2026-08-01 09:05:07] boot"
/// format("ing\n\rok\n", t) → "ing\n[2026-08-01 09:05:07] ok\n"
/// ```
///
/// Invariant: with a constant timestamp, formatting a stream in any split equals
/// formatting it whole.
public struct ConsoleLogFormatter: Sendable, Hashable {
    /// Prefix lines with timestamps (xenconsoled `--timestamp=guest`).
    public let timestamps: Bool
    /// Write ESC (0x1b) as `.` (xenconsoled `--replace-escape`), so that viewing a log
    /// cannot drive the viewer's terminal.
    public let replaceEscape: Bool

    private var atLineStart = true
    private var afterNewline = false

    public init(timestamps: Bool = false, replaceEscape: Bool = false) {
        self.timestamps = timestamps
        self.replaceEscape = replaceEscape
    }

    /// `bytes` with every ESC written as `.`: the rule of ``replaceEscape``, for a
    /// client showing a guest's output (`conch console --replace-escape`) too.
    public static func replacingEscapes(_ bytes: some Collection<UInt8>) -> [UInt8] {
        bytes.map(replacingEscape)
    }

    /// The rule itself, for one byte.
    private static func replacingEscape(_ byte: UInt8) -> UInt8 { byte == escape ? dot : byte }

    /// `byte` as the log shows it.
    private func shown(_ byte: UInt8) -> UInt8 { replaceEscape ? Self.replacingEscape(byte) : byte }

    /// True when the next byte will start a new line.
    public var isAtLineStart: Bool { atLineStart }

    /// The log bytes for `bytes` of output. `timestamp` is used only for lines that
    /// start within this call.
    public mutating func format(_ bytes: some Collection<UInt8>, at timestamp: LogTimestamp) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        guard timestamps else {
            for byte in bytes { output.append(shown(byte)) }
            return output
        }
        var prefix: [UInt8]?  // formatted at most once per call
        for byte in bytes {
            if afterNewline {
                afterNewline = false
                if byte == Self.carriageReturn { continue }
            }
            if atLineStart {
                if prefix == nil { prefix = Array(timestamp.prefix.utf8) }
                output += prefix ?? []
                atLineStart = false
            }
            output.append(shown(byte))
            if byte == Self.newline {
                atLineStart = true
                afterNewline = true
            }
        }
        return output
    }

    /// The first bytes of a freshly (re)opened log file: `<prefix>Logfile Opened\n`
    /// in a timestamped log, nothing otherwise (so an untimestamped log stays exactly
    /// the guest's output). If the guest was mid-line, the rest of that line starts
    /// the new file with its own prefix, so every line of a timestamped file has one.
    public mutating func fileOpened(at timestamp: LogTimestamp) -> [UInt8] {
        guard timestamps else { return [] }
        atLineStart = true
        return Array((timestamp.prefix + "Logfile Opened\n").utf8)
    }

    private static let newline = UInt8(ascii: "\n")
    private static let carriageReturn = UInt8(ascii: "\r")
    private static let escape: UInt8 = 0x1b
    private static let dot = UInt8(ascii: ".")
}

/// One file operation of a log rotation, as data for the I/O shell to perform.
public enum LogRotationStep: Sendable, Hashable {
    /// Delete `path`; a missing file is not an error.
    case remove(String)
    /// Rename `from` to `to`, replacing `to`; a missing `from` is not an error.
    case rename(from: String, to: String)
}

/// Size-based rotation of a console log (`--log-max-bytes`, `--log-backups`).
///
/// ```
/// policy(maxBytes: 1000, backups: 2), file "guest-web.log" holding 900 bytes
/// shouldRotate(currentSize: 900, incoming: 100) → false   (exactly 1000 fits)
/// shouldRotate(currentSize: 900, incoming: 101) → true
/// plan(for: "guest-web.log") →
///     remove guest-web.log.2
///     rename guest-web.log.1 → guest-web.log.2
///     rename guest-web.log   → guest-web.log.1
/// ```
///
/// After the plan the shell opens a new, empty file and writes
/// ``ConsoleLogFormatter/fileOpened(at:)``. With `backups` 0 the plan just removes the
/// file (rotation truncates). A write is never split across files, and an empty file
/// is never rotated, so a single write larger than `maxBytes` goes into a fresh file
/// whole instead of rotating forever.
public struct LogRotationPolicy: Sendable, Hashable {
    /// Rotate before a write would take the file beyond this size. 0 disables
    /// size-based rotation (SIGHUP reopening still works).
    public var maxBytes: UInt64
    /// Rotated files kept (`.1` newest … `.backups` oldest), at most
    /// ``maximumBackups``.
    public var backups: Int

    /// A bound on `backups`, so a typo cannot produce a million-step plan.
    public static let maximumBackups = 999

    /// Negative `backups` count as 0; more than ``maximumBackups`` as that.
    public init(maxBytes: UInt64, backups: Int) {
        self.maxBytes = maxBytes
        self.backups = min(max(0, backups), Self.maximumBackups)
    }

    /// Never rotate by size.
    public static let disabled = LogRotationPolicy(maxBytes: 0, backups: 0)

    /// Whether to rotate before writing `incoming` bytes to a file of `currentSize`.
    public func shouldRotate(currentSize: UInt64, incoming: Int) -> Bool {
        guard maxBytes > 0, currentSize > 0, incoming > 0 else { return false }
        return currentSize.addingSaturated(UInt64(incoming)) > maxBytes
    }

    /// The renames that rotate `path`, in the order to perform them.
    public func plan(for path: String) -> [LogRotationStep] {
        guard backups > 0 else { return [.remove(path)] }
        var steps: [LogRotationStep] = [.remove("\(path).\(backups)")]
        for index in stride(from: backups - 1, through: 1, by: -1) {
            steps.append(.rename(from: "\(path).\(index)", to: "\(path).\(index + 1)"))
        }
        steps.append(.rename(from: path, to: "\(path).1"))
        return steps
    }
}

/// File names of console logs under `--log-dir`.
public enum ConsoleLogName {
    /// `guest-<name><suffix>.log`, e.g. `guest-web.log` for console 0 of domain
    /// "web", `guest-web-agent.log` with suffix `-agent`.
    ///
    /// `nil` for an empty name (xenconsoled writes no log then). Characters that
    /// could leave the directory or end the C string (`/`, NUL) become `_`: domain
    /// names come from xenstore and are not trusted to be file-name safe.
    public static func fileName(domainName: String, suffix: String = "") -> String? {
        guard !domainName.isEmpty else { return nil }
        return "guest-" + sanitize(domainName) + sanitize(suffix) + ".log"
    }

    private static func sanitize(_ text: String) -> String {
        String(text.map { $0 == "/" || $0 == "\0" ? "_" : $0 })
    }
}
