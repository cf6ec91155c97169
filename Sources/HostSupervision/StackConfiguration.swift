//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Configuration
import Foundation
import SystemExtras
import SystemPackage

/// Every daemon option a host stack takes, in one place: what `conch up` reads
/// from its flags, `CONCH_*` environment variables and a JSON file (in that order
/// of precedence, through swift-configuration), checks, and hands to each daemon
/// as its command-line options.
///
/// The file nests by daemon, with snake_case keys:
///
/// ```json
/// { "log": { "level": "info", "format": "json", "directory": "/var/log/conch",
///            "max_bytes": 1048576, "backups": 5 },
///   "consoled": { "timestamps": true, "replace_escape": true, "rate_bytes": 65536 },
///   "xenstored": { "quota_nodes": 2000 } }
/// ```
///
/// The same key as an environment variable is `CONCH_` and the path in capitals
/// (`CONCH_LOG_FORMAT=json`, `CONCH_CONSOLED_RATE_BYTES=65536`); as a flag,
/// `conch up --set log.format=json`. An unknown key in the file, or a value of the
/// wrong kind anywhere, is an error naming the key and where it came from.
public struct StackConfiguration: Equatable, Sendable {
    /// One option of the stack.
    public enum Setting: String, CaseIterable, Sendable {
        case logLevel = "log.level"
        case logFormat = "log.format"
        case logDirectory = "log.directory"
        case logMaxBytes = "log.max_bytes"
        case logBackups = "log.backups"
        case timestamps = "consoled.timestamps"
        case replaceEscape = "consoled.replace_escape"
        case rateBytes = "consoled.rate_bytes"
        case rateBurst = "consoled.rate_burst"
        case metrics = "consoled.metrics"
        case quotaNodes = "xenstored.quota_nodes"
        case quotaWatches = "xenstored.quota_watches"
        case quotaNodeSize = "xenstored.quota_node_size"
        case quotaTransactions = "xenstored.quota_transactions"
        case quotaPermissions = "xenstored.quota_permissions"
        case quotaTransactionNodes = "xenstored.quota_transaction_nodes"
        case quotaPathLength = "xenstored.quota_path_length"
        case xenstoredMetrics = "xenstored.metrics"

        enum Kind {
            case text, count, flag
            case choice([String])
        }

        var kind: Kind {
            switch self {
            case .logLevel: .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"])
            case .logFormat: .choice(["text", "json"])
            case .logDirectory, .metrics, .xenstoredMetrics: .text
            case .timestamps, .replaceEscape: .flag
            default: .count
            }
        }

        /// The daemons that take it, and as which option.
        var options: [(daemon: String, option: String)] {
            switch self {
            case .logLevel: ["hypervisor", "xenstored", "consoled"].map { ($0, "--log-level") }
            case .logFormat: ["hypervisor", "xenstored", "consoled"].map { ($0, "--log-format") }
            case .logDirectory: [("consoled", "--log-dir")]
            case .logMaxBytes: [("consoled", "--log-max-bytes")]
            case .logBackups: [("consoled", "--log-backups")]
            case .timestamps: [("consoled", "--timestamps")]
            case .replaceEscape: [("consoled", "--replace-escape")]
            case .rateBytes: [("consoled", "--rate-bytes")]
            case .rateBurst: [("consoled", "--rate-burst")]
            case .metrics: [("consoled", "--metrics")]
            case .xenstoredMetrics: [("xenstored", "--metrics")]
            default:
                // xenstored.quota_nodes → --quota-nodes
                [("xenstored", "--" + rawValue.dropFirst("xenstored.".count).replacingOccurrences(of: "_", with: "-"))]
            }
        }
    }

    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// The settings given anywhere, checked, as text.
    public private(set) var values: [Setting: String] = [:]

    public init(values: [Setting: String] = [:]) { self.values = values }

    /// Warnings and worse only: for stacks a benchmark or the demo starts.
    public static let quiet = StackConfiguration(values: [.logLevel: "warning"])

    public subscript(_ setting: Setting) -> String? { values[setting] }

    /// The configuration from, highest first: `flags` (`--set key=value`), the
    /// `CONCH_*` variables of `environment`, and `file` (JSON) if given.
    public static func resolve(
        flags: [String],
        environment: [String: String],
        file: String?
    ) async throws -> StackConfiguration {
        var given: [AbsoluteConfigKey: ConfigValue] = [:]
        for flag in flags {
            guard let equals = flag.firstIndex(of: "="), let setting = Setting(rawValue: String(flag[..<equals])) else {
                throw Invalid(description: "--set takes KEY=VALUE with KEY one of: \(known); not '\(flag)'")
            }
            given[AbsoluteConfigKey(setting.rawValue.split(separator: ".").map(String.init))] = ConfigValue(
                .string(String(flag[flag.index(after: equals)...])),
                isSecret: false
            )
        }
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "--set", values: given),
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: ["conch"]),
        ]
        if let file {
            try checkKeys(ofFile: file)
            providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(file)))
        }
        let reader = ConfigReader(providers: providers)
        var configuration = StackConfiguration()
        let origin = "in --set, CONCH_* or \(file ?? "the configuration")"
        for setting in Setting.allCases {
            let key = ConfigKey(setting.rawValue.split(separator: ".").map(String.init))
            // Every kind is read as text first, so that a mistyped value is an error
            // naming it rather than a silent fallback; JSON numbers and booleans read
            // as text too.
            guard let text = Self.text(of: key, as: setting.kind, in: reader) else { continue }
            configuration.values[setting] = try check(setting, text, origin: origin)
        }
        return configuration
    }

    /// A value as text, whatever type its provider gave it.
    /// (JSON numbers and booleans convert into each other: each kind is asked for
    /// its own type first.)
    static func text(of key: ConfigKey, as kind: Setting.Kind, in reader: ConfigReader) -> String? {
        if let text = reader.string(forKey: key) { return text }
        switch kind {
        case .flag: if let flag = reader.bool(forKey: key) { return String(flag) }
        case .count: if let number = reader.int(forKey: key) { return String(number) }
        default: break
        }
        if let number = reader.double(forKey: key) { return String(number) }
        return nil
    }

    static var known: String { Setting.allCases.map(\.rawValue).joined(separator: ", ") }

    /// Checks one value for its kind; the value to pass on.
    static func check(_ setting: Setting, _ text: String, origin: String) throws -> String {
        switch setting.kind {
        case .text:
            guard !text.isEmpty, !text.contains("\0") else {
                throw Invalid(description: "\(setting.rawValue) \(origin) is empty")
            }
        case .count:
            guard UInt64(text) != nil else {
                throw Invalid(description: "\(setting.rawValue) \(origin) must be a whole number, not '\(text)'")
            }
        case .flag:
            guard text == "true" || text == "false" else {
                throw Invalid(description: "\(setting.rawValue) \(origin) must be true or false, not '\(text)'")
            }
        case .choice(let choices):
            guard choices.contains(text) else {
                throw Invalid(
                    description: "\(setting.rawValue) \(origin) must be one of \(choices.joined(separator: ", ")), "
                        + "not '\(text)'"
                )
            }
        }
        return text
    }

    /// Refuses a file that is not a JSON object of known sections and keys: a
    /// misspelt key would otherwise be ignored without a word.
    static func checkKeys(ofFile file: String) throws {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw Invalid(description: "cannot read the configuration file \(file)")
        }
        guard let top = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Invalid(description: "\(file) is not a JSON object")
        }
        for (section, value) in top {
            guard let entries = value as? [String: Any] else {
                throw Invalid(description: "\(file): '\(section)' must be an object of settings")
            }
            for (key, value) in entries {
                guard Setting(rawValue: "\(section).\(key)") != nil else {
                    throw Invalid(description: "\(file): unknown setting '\(section).\(key)' (known: \(known))")
                }
                guard value is String || value is NSNumber else {
                    throw Invalid(description: "\(file): '\(section).\(key)' must be a string, a number or a boolean")
                }
            }
        }
    }

    /// The options `daemon` gets for these settings (a flag set to false gives none).
    public func arguments(for daemon: String) -> [String] {
        var arguments: [String] = []
        for setting in Setting.allCases {
            guard let value = values[setting] else { continue }
            for target in setting.options where target.daemon == daemon {
                if case .flag = setting.kind {
                    if value == "true" { arguments.append(target.option) }
                } else {
                    arguments += [target.option, value]
                }
            }
        }
        return arguments
    }

    /// Where the daemons' own logs go: `log.directory` if set; for a system stack
    /// (run directory under /run or /var/run), `/var/log/conch`, which survives a
    /// reboot; else `<run-dir>/logs`.
    public func logDirectory(for runDirectory: RunDirectory) -> String {
        if let directory = values[.logDirectory] { return directory }
        let system = runDirectory.path.hasPrefix("/run/") || runDirectory.path.hasPrefix("/var/run/")
        return system ? "/var/log/conch" : runDirectory.logDirectory
    }
}
