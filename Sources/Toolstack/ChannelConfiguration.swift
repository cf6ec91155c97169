//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// Where a channel's backend end goes (xen-pv-channel(7), libxl's
/// `libxl_channel_connection`).
public enum ChannelConnection: Equatable, Sendable {
    /// A pty in the backend domain; the backend writes its name to `tty`.
    case pty
    /// A listening Unix socket at `path` in the backend domain; one client at a time.
    case socket(path: String)

    /// The `connection` node value: `pty` or `socket`.
    public var name: String {
        switch self {
        case .pty: "pty"
        case .socket: "socket"
        }
    }
}

/// One `channel = [ "…" ]` entry: a named PV console (devid ≥ 1).
///
/// JSON form: `{"devid": 1, "name": "…", "connection": "pty"|"socket",
/// "path": "…" (socket only), "backend": "…" (when given)}`.
public struct ChannelConfiguration: Equatable, Sendable, Codable {
    /// The well-known name that hooks the guest agent to the channel. Optional
    /// here because xl does not require it; libxl refuses a channel without one
    /// ("channel N has no name") when the domain is built.
    public var name: String?
    /// nil stands for libxl's "unknown" connection. xl's parser never produces
    /// it (it rejects the spec first), but a configuration built in code or
    /// decoded from JSON can, and validation then fails as libxl would.
    public var connection: ChannelConnection?
    /// The backend domain exactly as written (`backend=`): a name or a numeric
    /// id; resolved when the plan is made. nil means the toolstack domain.
    public var backend: String?
    /// The console device id: the channel's 0-based index in the list plus 1,
    /// so channels are consoles 1…N and console 0 stays the ordinary console.
    public var devid: Int

    public init(name: String?, connection: ChannelConnection?, backend: String? = nil, devid: Int) {
        self.name = name
        self.connection = connection
        self.backend = backend
        self.devid = devid
    }

    private enum CodingKeys: String, CodingKey { case devid, name, connection, path, backend }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        devid = try container.decode(Int.self, forKey: .devid)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        backend = try container.decodeIfPresent(String.self, forKey: .backend)
        switch try container.decodeIfPresent(String.self, forKey: .connection) {
        case "pty"?: connection = .pty
        case "socket"?: connection = .socket(path: try container.decodeIfPresent(String.self, forKey: .path) ?? "")
        default: connection = nil
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(devid, forKey: .devid)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encodeIfPresent(connection?.name, forKey: .connection)
        if case .socket(let path) = connection { try container.encode(path, forKey: .path) }
        try container.encodeIfPresent(backend, forKey: .backend)
    }

    /// The outcome of parsing one channel spec: the channel and xl's warnings.
    public struct ParseResult: Equatable, Sendable {
        public var channel: ChannelConfiguration
        /// Warning texts without file/line (the caller adds the location).
        public var warnings: [String]
    }

    /// Parses one channel spec exactly as xl 4.21 does (`parse_config_data`):
    ///
    /// - The spec is split on `,`; empty items are skipped (strtok).
    /// - Each item is split at its first `=` (`split_string_into_pair` since
    ///   Xen 4.18, upstream 4bad14a133): everything after it is the value, `=`
    ///   included. An item without `=`, or with nothing after it, is "failed to
    ///   parse channel configuration: ITEM".
    /// - Key and value are trimmed of whitespace; the last duplicate wins.
    /// - Keys: `backend`, `name`, `path`, `connection` (`pty`|`socket`,
    ///   lowercase only); others give "unknown channel parameter 'K', ignoring",
    ///   to which Conch adds a "did you mean" for a near miss.
    /// - The devid is the position plus one, as libxl assigns it when xl leaves
    ///   it unset (upstream e1ccced4af and 3a66796347); xl 4.17 gave the first
    ///   channel devid 0, which libxl then dropped as an invalid primary console.
    /// - No connection: "channel has unknown 'connection'"; socket without
    ///   path: "channel connection 'socket' requires path=.."; `path` with pty
    ///   is ignored.
    ///
    /// The one departure: an empty spec (nothing but commas or nothing at all)
    /// crashes xl; here it is a clear error.
    ///
    /// - Parameters:
    ///   - spec: the string from the `channel` list.
    ///   - index: 0-based position in the list; the devid becomes `index + 1`.
    /// - Throws: ``DomainValidationError`` carrying xl's message.
    public static func parse(spec: String, index: Int) throws(DomainValidationError) -> ParseResult {
        // Split on Unicode scalars, not Characters: strtok works on bytes, and a
        // combining mark after ',' or '=' must not hide the separator.
        let items = spec.unicodeScalars.split(separator: ",").map { Substring($0) }
        guard !items.isEmpty else {
            throw DomainValidationError(
                "empty channel specification: write e.g. \"name=org.example.agent.0, connection=pty\""
            )
        }
        var name: String?
        var backend: String?
        var path: String?
        var connection: String?
        var warnings: [String] = []
        for item in items {
            // Split at the first '=' only, as xl since 4.18 (`path=/run/a=b.sock`
            // keeps its whole value); nothing after it is an error.
            let scalars = item.unicodeScalars
            guard let equals = scalars.firstIndex(of: "="), scalars.index(after: equals) < scalars.endIndex else {
                throw DomainValidationError("failed to parse channel configuration: \(item)")
            }
            let key = trimWhitespace(Substring(scalars[..<equals]))
            let value = trimWhitespace(Substring(scalars[scalars.index(after: equals)...]))
            switch key {
            case "backend": backend = value
            case "name": name = value
            case "path": path = value
            case "connection":
                guard value == "pty" || value == "socket" else {
                    throw DomainValidationError("unknown channel connection '\(value)'")
                }
                connection = value
            default:
                let guess = NearMiss.closest(to: key, among: ["backend", "name", "path", "connection"])
                warnings.append(
                    "unknown channel parameter '\(key)', ignoring" + (guess.map { " (did you mean '\($0)'?)" } ?? "")
                )
            }
        }
        let resolved: ChannelConnection
        switch connection {
        case "pty"?:
            resolved = .pty
        case "socket"?:
            guard let path else { throw DomainValidationError("channel connection 'socket' requires path=..") }
            resolved = .socket(path: path)
        default:
            throw DomainValidationError("channel has unknown 'connection'")
        }
        let channel = ChannelConfiguration(name: name, connection: resolved, backend: backend, devid: index + 1)
        return ParseResult(channel: channel, warnings: warnings)
    }

    /// Trims C `isspace` characters from both ends, as xl's `trim(isspace, …)`.
    static func trimWhitespace(_ text: Substring) -> String {
        func isSpace(_ scalar: Unicode.Scalar) -> Bool {
            scalar == " " || scalar == "\t" || scalar == "\n" || scalar == "\r" || scalar == "\u{0B}"
                || scalar == "\u{0C}"
        }
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }),
            let last = scalars.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(scalars[first...last])
    }
}
