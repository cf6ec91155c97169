//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import SystemExtras

#if canImport(Glibc)
import Glibc
#endif

/// A console's log file: formatted by ``ConsoleLogFormatter``, rotated by size,
/// reopened on SIGHUP (the logrotate hook). Writes are plain `write(2)`s: once one
/// returns, the bytes survive a `kill -9` of consoled, so console 0's ring may be
/// consumed past them.
final class ConsoleLogFile {
    let path: String
    private var fd: Int32 = -1
    private var size: UInt64 = 0
    private var formatter: ConsoleLogFormatter
    private let rotation: LogRotationPolicy

    init(path: String, timestamps: Bool, replaceEscape: Bool = false, rotation: LogRotationPolicy) {
        self.path = path
        self.formatter = ConsoleLogFormatter(timestamps: timestamps, replaceEscape: replaceEscape)
        self.rotation = rotation
        open()
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Reopens the file (after logrotate moved it).
    func reopen() {
        if fd >= 0 { close(fd) }
        fd = -1
        open()
    }

    private func open() {
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o640)
        var info = stat()
        size = fd >= 0 && fstat(fd, &info) == 0 ? UInt64(info.st_size) : 0
        writeAll(formatter.fileOpened(at: Self.now()))
    }

    /// Appends guest output. Returns false if the bytes could not be written.
    @discardableResult
    func append(_ bytes: some Collection<UInt8>) -> Bool {
        let now = Self.now()
        // Format on a copy first: if the result does not fit, rotate before
        // formatting for real, so a line continued in the new file gets its prefix.
        var probe = formatter
        var formatted = probe.format(bytes, at: now)
        if rotation.shouldRotate(currentSize: size, incoming: formatted.count) {
            rotate()
            formatted = formatter.format(bytes, at: now)
        } else {
            formatter = probe
        }
        return writeAll(formatted)
    }

    private func rotate() {
        if fd >= 0 { close(fd) }
        fd = -1
        for step in rotation.plan(for: path) {
            switch step {
            case .remove(let file): unlink(file)
            case .rename(let from, let to): rename(from, to)
            }
        }
        open()
    }

    @discardableResult
    private func writeAll(_ bytes: [UInt8]) -> Bool {
        guard fd >= 0, SystemExtras.writeAll(fd, bytes[...]) else { return false }
        size += UInt64(bytes.count)
        return true
    }

    static func now() -> LogTimestamp {
        var seconds = time(nil)
        var parts = tm()
        localtime_r(&seconds, &parts)
        return LogTimestamp(
            year: Int(parts.tm_year) + 1900,
            month: Int(parts.tm_mon) + 1,
            day: Int(parts.tm_mday),
            hour: Int(parts.tm_hour),
            minute: Int(parts.tm_min),
            second: Int(parts.tm_sec)
        )
    }
}
