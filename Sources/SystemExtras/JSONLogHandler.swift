//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// swift-log's output as one JSON object per line on standard error
/// (`--log-format json`), for journald, Loki or jq rather than a person:
/// `{"label":…,"level":"info","message":…,"metadata":{…},"source":…,"timestamp":…}`,
/// keys in snake_case and sorted as every `--json` output of conch's is.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let line = Self.line(
            timestamp: Date(),
            label: label,
            level: event.level,
            message: "\(event.message)",
            metadata: merged,
            source: event.source
        )
        _ = writeAll(STDERR_FILENO, Array((line + "\n").utf8)[...])
    }

    /// One log line; what ``log(event:)`` writes.
    static func line(
        timestamp: Date,
        label: String,
        level: Logger.Level,
        message: String,
        metadata: Logger.Metadata,
        source: String
    ) -> String {
        var object: [String: Any] = [
            "timestamp": Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(timestamp),
            "label": label,
            "level": level.rawValue,
            "message": message,
            "source": source,
        ]
        if !metadata.isEmpty { object["metadata"] = metadata.mapValues { "\($0)" } }
        guard
            let data = try? JSONSerialization.data(
                withJSONObject: object,
                options: [.sortedKeys, .withoutEscapingSlashes]
            )
        else { return #"{"message":"unencodable log line"}"# }
        return String(decoding: data, as: UTF8.self)
    }
}
