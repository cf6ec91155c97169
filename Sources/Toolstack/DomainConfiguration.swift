//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import XenABI

/// The guest type (`type=` in xl.cfg(5)). Conch records it for the layout
/// (`/libxl/<d>/type`, HVM-only nodes); every type runs as a host program.
public enum DomainType: String, Equatable, Sendable, Codable, CaseIterable {
    case pv
    case pvh
    case hvm
}

/// A parsed, typed domain configuration: plain data, what `--dry-run` prints.
///
/// Produced by ``parse(_:fileName:)`` from xl.cfg text; checked with
/// ``validate()`` (libxl's build-time checks) and ``checkKernel(isExecutable:)``
/// (Conch's "the kernel is a host program" rule) before a ``DomainPlan`` is made.
public struct DomainConfiguration: Equatable, Sendable, Codable {
    public var name: String
    /// Lowercase canonical UUID text, or nil when the file gives none. The pure
    /// core never invents one: the caller generates it and passes it to the plan.
    public var uuid: String?
    public var type: DomainType
    /// Initial memory in MiB (`memory`, default 32 as in libxl).
    public var memory: Int
    /// Maximum memory in MiB (`maxmem`, default `memory`).
    public var maxMemory: Int
    /// vCPUs online at start (`vcpus`, default 1).
    public var vcpus: Int
    /// vCPUs the guest may bring up (`maxvcpus`, default `vcpus`).
    public var maxVCPUs: Int
    /// The program the guest runs: a host executable path, absolute or relative.
    public var kernel: String
    /// The program's arguments, from `cmdline` (or `root`/`extra`, combined as
    /// xl does) split with ``ShellWords``.
    public var arguments: [String]
    public var onPoweroff: ShutdownAction
    public var onReboot: ShutdownAction
    public var onCrash: ShutdownAction
    public var channels: [ChannelConfiguration]
    public var frontend: FrontendMode
    /// Event channels the domain may hold (`max_event_channels`, xl's default 1023).
    public var maxEventChannels: Int
    /// Frames of other domains' grants the domain may map (`max_maptrack_frames`, 512 each).
    public var maxMaptrackFrames: Int
    /// May the guest write to the hypervisor console (`conch_console_io`, a Conch
    /// extension standing in for XSM's console_io permission; default no)?
    public var hypervisorConsole: Bool

    enum CodingKeys: String, CodingKey {
        case name, uuid, type, memory, maxMemory, vcpus
        /// So that conch's snake_case JSON (`max_vcpus`) reads back as this key.
        case maxVCPUs = "maxVcpus"
        case kernel, arguments, onPoweroff, onReboot, onCrash, channels, frontend
        case maxEventChannels, maxMaptrackFrames, hypervisorConsole
    }

    public init(
        name: String,
        uuid: String? = nil,
        type: DomainType = .pv,
        memory: Int = 32,
        maxMemory: Int? = nil,
        vcpus: Int = 1,
        maxVCPUs: Int? = nil,
        kernel: String,
        arguments: [String] = [],
        onPoweroff: ShutdownAction = .destroy,
        onReboot: ShutdownAction = .restart,
        onCrash: ShutdownAction = .destroy,
        channels: [ChannelConfiguration] = [],
        frontend: FrontendMode = .flagAware,
        maxEventChannels: Int = 1023,
        maxMaptrackFrames: Int = 1024,
        hypervisorConsole: Bool = false
    ) {
        self.name = name
        self.uuid = uuid
        self.type = type
        self.memory = memory
        self.maxMemory = maxMemory ?? memory
        self.vcpus = vcpus
        self.maxVCPUs = maxVCPUs ?? vcpus
        self.kernel = kernel
        self.arguments = arguments
        self.onPoweroff = onPoweroff
        self.onReboot = onReboot
        self.onCrash = onCrash
        self.channels = channels
        self.frontend = frontend
        self.maxEventChannels = maxEventChannels
        self.maxMaptrackFrames = maxMaptrackFrames
        self.hypervisorConsole = hypervisorConsole
    }

    /// A parsed configuration together with the warnings parsing produced.
    public struct Parsed: Equatable, Sendable {
        public var configuration: DomainConfiguration
        public var warnings: [ConfigWarning]
    }

    /// The top-level keys this parser understands. Any other key is accepted
    /// with one warning (xl.cfg has many keys that mean nothing under Conch).
    public static let knownKeys: Set<String> = [
        "name", "uuid", "type", "builder", "memory", "maxmem", "vcpus", "maxvcpus", "kernel", "cmdline", "root",
        "extra", "on_poweroff", "on_reboot", "on_crash", "channel", "conch_frontend", "max_event_channels",
        "max_maptrack_frames", "conch_console_io",
    ]

    /// Parses xl.cfg text into a configuration (lexing, grammar and the meaning
    /// of each key). Channel specs follow xl exactly (see
    /// ``ChannelConfiguration/parse(spec:index:)``).
    public static func parse(_ text: String, fileName: String) throws(ConfigError) -> Parsed {
        try parse(XLConfig.parse(text, fileName: fileName))
    }

    /// Interprets already-parsed settings; see ``parse(_:fileName:)``.
    public static func parse(_ config: XLConfig) throws(ConfigError) -> Parsed {
        var reader = SettingReader(config: config)
        return try reader.read()
    }

    /// libxl's build-time checks (`libxl__init_console_from_channel`), all of
    /// them, before anything is planned: nothing is ever half built.
    ///
    /// Messages are libxl's: "channel N has no name", "channel N has no defined
    /// connection; to where should it be connected?", "channel N has no path",
    /// with N the channel's devid. Also checked, for configurations that were
    /// built in code rather than parsed: positive sizes, unique devids ≥ 1.
    public func validate() throws(DomainValidationError) {
        guard !name.isEmpty else { throw DomainValidationError("Domain name must be specified.") }
        // The name becomes a file name (the guest's logs), a terminal's text and a xenstore value.
        if let problem = NameRules.problem(with: name, what: "domain name") { throw DomainValidationError(problem) }
        guard UInt16(name) == nil else {
            throw DomainValidationError("domain name '\(name)' is a number: commands would take it for a domid")
        }
        guard memory >= 1, maxMemory >= memory else {
            throw DomainValidationError(
                "memory (\(memory) MiB) must be at least 1 and at most maxmem (\(maxMemory) MiB)"
            )
        }
        guard vcpus >= 1, maxVCPUs >= vcpus else {
            throw DomainValidationError("vcpus (\(vcpus)) must be at least 1 and at most maxvcpus (\(maxVCPUs))")
        }
        var devids = Set<Int>()
        for channel in channels {
            guard channel.devid >= 1 else {
                throw DomainValidationError(
                    "channel devid \(channel.devid) is invalid: devid 0 is the primary console, channels start at 1"
                )
            }
            guard devids.insert(channel.devid).inserted else {
                throw DomainValidationError("channel devid \(channel.devid) is used twice")
            }
            guard let channelName = channel.name else {
                throw DomainValidationError("channel \(channel.devid) has no name")
            }
            if let problem = NameRules.problem(with: channelName, what: "channel \(channel.devid)'s name") {
                throw DomainValidationError(problem)
            }
            switch channel.connection {
            case nil:
                throw DomainValidationError(
                    "channel \(channel.devid) has no defined connection; to where should it be connected?"
                )
            case .socket(let path)? where path.isEmpty:
                throw DomainValidationError("channel \(channel.devid) has no path")
            default:
                break
            }
        }
    }

    /// Checks that `kernel` names a host program Conch can run.
    ///
    /// Stays pure: the caller supplies `isExecutable` (for example a wrapper
    /// around `access(X_OK)` on a regular file).
    public func checkKernel(isExecutable: (String) -> Bool) throws(DomainValidationError) {
        guard !kernel.isEmpty, isExecutable(kernel) else {
            throw DomainValidationError(
                "kernel '\(kernel)' is not an executable program: Conch runs a host program as the guest's kernel "
                    + "(e.g. kernel = \"/usr/bin/my-agent\")"
            )
        }
    }

    /// ``validate()`` then ``checkKernel(isExecutable:)``.
    public func validate(isExecutable: (String) -> Bool) throws(DomainValidationError) {
        try validate()
        try checkKernel(isExecutable: isExecutable)
    }
}

/// Reads the typed keys out of an ``XLConfig`` and collects warnings.
private struct SettingReader {
    let config: XLConfig
    var warnings: [ConfigWarning] = []

    init(config: XLConfig) { self.config = config }

    private var file: String { config.fileName }

    private func line(of key: String) -> Int { config.lastSetting(for: key)?.line ?? 0 }

    private func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, line: line(of: key), message: message)
    }

    private mutating func warn(_ key: String, _ message: String) {
        warnings.append(ConfigWarning(file: file, line: line(of: key), message: message))
    }

    /// A string-valued key; numbers are accepted as their text, as libxlu does.
    private func string(_ key: String) throws(ConfigError) -> String? {
        guard let value = try config.value(for: key) else { return nil }
        guard let text = value.atomText else {
            throw error(key, "parameter '\(key)' is a list but should be a single value, e.g. \(key) = \"…\"")
        }
        return text
    }

    /// An integer key, read with strtol base-0 rules from a number or a string.
    private func integer(_ key: String, range: ClosedRange<Int>, unit: String) throws(ConfigError) -> Int? {
        guard let value = try config.value(for: key) else { return nil }
        guard let text = value.atomText else {
            throw error(key, "parameter '\(key)' is a list but should be a single number, e.g. \(key) = 1")
        }
        guard let parsed = XLNumber.parse(text) else {
            throw error(key, "parameter '\(key)' is not a valid number: '\(text)'")
        }
        guard let result = Int(exactly: parsed), range.contains(result) else {
            throw error(
                key,
                "parameter '\(key)' is out of range: \(text) (it must be between \(range.lowerBound) and "
                    + "\(range.upperBound)\(unit))"
            )
        }
        return result
    }

    private func action(_ key: String, default fallback: ShutdownAction) throws(ConfigError) -> ShutdownAction {
        guard let text = try string(key) else { return fallback }
        guard let action = ShutdownAction(rawValue: text) else {
            let names = ShutdownAction.allCases.map(\.rawValue).joined(separator: ", ")
            throw error(key, "Unknown \(key) action \"\(text)\" specified (use one of \(names))")
        }
        return action
    }

    /// Every warning is collected before the first error stops the reading, and
    /// travels with it (``ConfigError/warnings``): a misspelt `kernal` still says
    /// so when the missing `kernel` is what fails.
    mutating func read() throws(ConfigError) -> DomainConfiguration.Parsed {
        do {
            return try readAll()
        } catch {
            var failure = error
            failure.warnings = warnings
            throw failure
        }
    }

    private mutating func readAll() throws(ConfigError) -> DomainConfiguration.Parsed {
        for key in config.keys where !DomainConfiguration.knownKeys.contains(key) {
            var message = "ignoring unknown or unsupported parameter '\(key)'"
            if let guess = NearMiss.closest(to: key, among: DomainConfiguration.knownKeys) {
                message += " (did you mean '\(guess)'?)"
            }
            warnings.append(
                ConfigWarning(file: file, line: config.settings.first { $0.key == key }?.line ?? 0, message: message)
            )
        }
        for (index, setting) in config.settings.enumerated() where setting.op == .assign {
            if let earlier = config.settings[..<index].last(where: { $0.key == setting.key }) {
                warnings.append(
                    ConfigWarning(
                        file: file,
                        line: setting.line,
                        message: "'\(setting.key)' is set again (first on line \(earlier.line)); the last setting wins"
                    )
                )
            }
        }

        // Channels are read first so that their warnings are collected whatever
        // fails later; their error, if any, still comes in xl's order.
        let channelsRead: Result<[ChannelConfiguration], ConfigError>
        do throws(ConfigError) {
            channelsRead = .success(try readChannels())
        } catch {
            channelsRead = .failure(error)
        }

        guard let name = try string("name"), !name.isEmpty else {
            throw ConfigError(file: file, line: line(of: "name"), message: "Domain name must be specified.")
        }

        var uuid: String?
        if let text = try string("uuid") {
            guard let canonical = canonicalUUID(text) else {
                throw error("uuid", "Failed to parse UUID: \(text) (write 8-4-4-4-12 hex digits)")
            }
            uuid = canonical
        }

        let type = try readType()
        // 1 TiB and 4096 vCPUs are far beyond what a host process needs, and keep
        // the KiB values written to xenstore well inside 64 bits.
        let memory = try integer("memory", range: 1...(1 << 20), unit: " MiB") ?? 32
        let maxMemory = try integer("maxmem", range: 1...(1 << 20), unit: " MiB") ?? memory
        guard maxMemory >= memory else {
            throw error("maxmem", "maxmem (\(maxMemory) MiB) must be greater than or equal to memory (\(memory) MiB)")
        }
        let vcpus = try integer("vcpus", range: 1...4096, unit: "") ?? 1
        let maxVCPUs = try integer("maxvcpus", range: 1...4096, unit: "") ?? vcpus
        guard maxVCPUs >= vcpus else {
            throw error("maxvcpus", "maxvcpus (\(maxVCPUs)) must be greater than or equal to vcpus (\(vcpus))")
        }

        guard let kernel = try string("kernel") else {
            throw ConfigError(
                file: file,
                line: 0,
                message: "no kernel specified: Conch runs a host program as the guest's kernel, add e.g. "
                    + "kernel = \"/usr/bin/my-agent\""
            )
        }
        guard !kernel.isEmpty, !kernel.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw error(
                "kernel",
                "kernel must be a path to a host program, e.g. kernel = \"/usr/bin/my-agent\""
            )
        }

        let arguments = try readArguments()
        let onPoweroff = try action("on_poweroff", default: .destroy)
        let onReboot = try action("on_reboot", default: .restart)
        let onCrash = try action("on_crash", default: .destroy)
        let channels = try channelsRead.get()

        var frontend = FrontendMode.flagAware
        if let text = try string("conch_frontend") {
            guard let mode = FrontendMode(rawValue: text) else {
                throw error(
                    "conch_frontend",
                    "unknown conch_frontend '\(text)': use \"new\" (the default: the seed's frontend), "
                        + "\"linux71\" (drop writes while disconnected) or \"legacy\" (ignore the connection flag)"
                )
            }
            frontend = mode
        }

        let maxEventChannels = try integer("max_event_channels", range: 4...131_072, unit: "") ?? 1023
        let maxMaptrackFrames = try integer("max_maptrack_frames", range: 0...(1 << 20), unit: "") ?? 1024
        let hypervisorConsole = (try integer("conch_console_io", range: 0...1, unit: "") ?? 0) == 1

        let configuration = DomainConfiguration(
            name: name,
            uuid: uuid,
            type: type,
            memory: memory,
            maxMemory: maxMemory,
            vcpus: vcpus,
            maxVCPUs: maxVCPUs,
            kernel: kernel,
            arguments: arguments,
            onPoweroff: onPoweroff,
            onReboot: onReboot,
            onCrash: onCrash,
            channels: channels,
            frontend: frontend,
            maxEventChannels: maxEventChannels,
            maxMaptrackFrames: maxMaptrackFrames,
            hypervisorConsole: hypervisorConsole
        )
        return DomainConfiguration.Parsed(configuration: configuration, warnings: warnings)
    }

    private mutating func readType() throws(ConfigError) -> DomainType {
        if let text = try string("type") {
            guard let type = DomainType(rawValue: text) else {
                throw error("type", "Invalid domain type \(text). (use \"pv\", \"pvh\" or \"hvm\")")
            }
            return type
        }
        if let builder = try string("builder") {
            warn("builder", "The \"builder\" option is being deprecated, please use \"type\" instead.")
            switch builder {
            case "hvm": return .hvm
            case "generic": return .pv
            default: throw error("builder", "Invalid domain type \(builder). (use type = \"pv\", \"pvh\" or \"hvm\")")
            }
        }
        return .pv
    }

    /// xl's `parse_cmdline`: `cmdline` wins over `root`/`extra`; otherwise
    /// `root=ROOT EXTRA`, `root=ROOT` or `EXTRA`.
    private mutating func readArguments() throws(ConfigError) -> [String] {
        let cmdline = try string("cmdline")
        let root = try string("root")
        let extra = try string("extra")
        let source: String
        let key: String
        if let cmdline {
            if root != nil || extra != nil {
                warn("cmdline", "ignoring root= and extra= in favour of cmdline=")
            }
            (source, key) = (cmdline, "cmdline")
        } else if let root {
            (source, key) = (extra.map { "root=\(root) \($0)" } ?? "root=\(root)", "root")
        } else if let extra {
            (source, key) = (extra, "extra")
        } else {
            return []
        }
        do {
            return try ShellWords.split(source)
        } catch {
            throw self.error(key, "cannot split \(key) into arguments: \(error)")
        }
    }

    private mutating func readChannels() throws(ConfigError) -> [ChannelConfiguration] {
        guard let value = try config.value(for: "channel") else { return [] }
        guard case .list(let items) = value else {
            // xl (libxlu) warns and configures no channel at all.
            warn(
                "channel",
                "parameter `channel' is a single value but should be a list; no channel is configured "
                    + "(write channel = [ \"name=…, connection=pty\" ])"
            )
            return []
        }
        let lines = config.elementLines(for: "channel")
        var channels: [ChannelConfiguration] = []
        for (index, item) in items.enumerated() {
            let itemLine = index < lines.count ? lines[index] : line(of: "channel")
            guard case .string(let spec) = item else {
                throw ConfigError(
                    file: file,
                    line: itemLine,
                    message: "channel \(index + 1) must be a quoted string such as \"name=…, connection=pty\", "
                        + "not \(item.kindDescription)"
                )
            }
            do {
                let result = try ChannelConfiguration.parse(spec: spec, index: index)
                channels.append(result.channel)
                warnings += result.warnings.map { ConfigWarning(file: file, line: itemLine, message: $0) }
            } catch {
                throw ConfigError(file: file, line: itemLine, message: error.message)
            }
        }
        return channels
    }
}
