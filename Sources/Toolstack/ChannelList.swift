//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// The connection column of `xl channel-list`: libxl's enum name in lowercase.
public enum ChannelListConnection: String, Equatable, Sendable, Codable {
    case unknown
    case pty
    case socket

    /// Reads a `connection` node value; anything but `pty`/`socket` is unknown.
    public init(nodeValue: String?) {
        self = nodeValue.flatMap(ChannelListConnection.init(rawValue:)) ?? .unknown
    }
}

/// One row of `xl channel-list`: what `libxl_device_channel_getinfo` reports.
/// nil numbers are nodes that were missing and print as -1.
public struct ChannelListEntry: Equatable, Sendable, Codable {
    /// 0-based position among the domain's named consoles (not the devid).
    public var index: Int
    public var backendID: Int?
    public var state: Int?
    public var eventChannel: Int?
    public var ringRef: Int?
    public var connection: ChannelListConnection
    /// The pty path from the frontend `tty` node (pty channels only).
    public var ptyPath: String?

    public init(
        index: Int,
        backendID: Int?,
        state: Int?,
        eventChannel: Int?,
        ringRef: Int?,
        connection: ChannelListConnection,
        ptyPath: String? = nil
    ) {
        self.index = index
        self.backendID = backendID
        self.state = state
        self.eventChannel = eventChannel
        self.ringRef = ringRef
        self.connection = connection
        self.ptyPath = ptyPath
    }

    /// Builds a row as libxl's `getinfo` does after XSA-178: the backend domid
    /// parsed from the backend path in the `/libxl` copy (never the guest-written
    /// `backend-id`), `connection` from that copy, and the live values (`state`,
    /// `port`, `ring-ref`, `tty`) from the frontend directory. Numbers are read
    /// like `strtoul(…, 10)`: leading digits count, a missing node is nil (printed -1).
    public init(index: Int, backendPath: String?, frontendNodes: [String: String], connection: String?) {
        self.init(
            index: index,
            backendID: backendPath.flatMap(ConsoleLayout.parseBackend).map { Int($0.backend.rawValue) },
            state: Self.leadingNumber(frontendNodes["state"]),
            eventChannel: Self.leadingNumber(frontendNodes["port"]),
            ringRef: Self.leadingNumber(frontendNodes["ring-ref"]),
            connection: ChannelListConnection(nodeValue: connection),
            ptyPath: frontendNodes["tty"]
        )
    }

    private static func leadingNumber(_ text: String?) -> Int? {
        guard let text else { return nil }
        var value = 0
        // strtoul skips leading blanks, then reads decimal digits up to the first non-digit.
        for scalar in text.unicodeScalars.drop(while: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
            guard ("0"..."9").contains(scalar) else { break }
            let (shifted, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = shifted.addingReportingOverflow(Int(scalar.value) - 48)
            // strtoul saturates; so do we, rather than trapping.
            guard !o1, !o2 else { return Int.max }
            value = sum
        }
        return value
    }
}

/// `xl channel-list` output formatting (`main_channellist` in
/// tools/xl/xl_console.c; reference §6.2).
///
/// The header is printed once with `%-3s %-2s %-5s %-6s %8s %-10s %-30s`
/// (ring-ref right-aligned, an empty 30-wide last column). Each row uses
/// `%-3d %-2d %-5d %-6d %-8d %-10s ` (ring-ref left-aligned, unlike the header)
/// and, for pty channels, the pty path as `%-30s `. Every field is followed by
/// one space; widths are minimums, longer values are not cut.
public enum ChannelList {
    /// What libxl's `getinfo` reports as the path of a pty channel whose `tty`
    /// node is missing.
    public static let missingPtyPath = "/NO-SUCH-PATH"

    /// The header line, with its trailing padding and newline.
    public static let header: String =
        leftAligned("Idx", 3) + " " + leftAligned("BE", 2) + " " + leftAligned("state", 5) + " "
        + leftAligned("evt-ch", 6) + " " + rightAligned("ring-ref", 8) + " " + leftAligned("connection", 10) + " "
        + leftAligned("", 30) + "\n"

    /// One row, with its newline.
    public static func row(_ entry: ChannelListEntry) -> String {
        var line = leftAligned(String(entry.index), 3) + " " + leftAligned(number(entry.backendID), 2) + " "
        line += leftAligned(number(entry.state), 5) + " "
        line += leftAligned(number(entry.eventChannel), 6) + " " + leftAligned(number(entry.ringRef), 8) + " "
        line += leftAligned(entry.connection.rawValue, 10) + " "
        if entry.connection == .pty {
            line += leftAligned(entry.ptyPath ?? missingPtyPath, 30) + " "
        }
        return line + "\n"
    }

    /// The header followed by one row per entry, exactly as xl prints it
    /// (the header appears even when there are no rows).
    public static func format(_ entries: [ChannelListEntry]) -> String {
        entries.reduce(header) { $0 + row($1) }
    }

    private static func number(_ value: Int?) -> String { value.map(String.init) ?? "-1" }

    private static func leftAligned(_ text: String, _ width: Int) -> String {
        let count = text.count
        return count >= width ? text : text + String(repeating: " ", count: width - count)
    }

    private static func rightAligned(_ text: String, _ width: Int) -> String {
        let count = text.count
        return count >= width ? text : String(repeating: " ", count: width - count) + text
    }
}
