//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// What Linux's `/proc` says about a running process.
public enum ProcessStatistics {
    /// User plus system CPU time, in clock ticks (`/proc/<pid>/stat` fields 14
    /// and 15); nil if the process is gone.
    public static func cpuTicks(_ pid: Int32) -> Int? {
        guard let bytes = readSmallFile("/proc/\(pid)/stat", limit: 4096),
            case let text = String(decoding: bytes, as: UTF8.self),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // After the command (which may contain spaces, hence the last ')'), state is
        // field 3; utime and stime are fields 14 and 15 of the line.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return user + system
    }

    /// Clock ticks per second, the unit of ``cpuTicks(_:)``.
    public static var ticksPerSecond: Double { Double(sysconf(Int32(_SC_CLK_TCK))) }

    /// Resident memory (`VmRSS` of `/proc/<pid>/status`) in bytes; nil if the process is gone.
    public static func residentBytes(_ pid: Int32) -> UInt64? {
        guard let bytes = readSmallFile("/proc/\(pid)/status", limit: 16384),
            case let text = String(decoding: bytes, as: UTF8.self),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = UInt64(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kilobytes * 1024
    }
}
