//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Foundation
import SystemExtras
import Toolstack
import ToolstackRuntime
import XenABI
import XenHypervisor

#if canImport(Glibc)
import Glibc
#endif

struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a domain from an xl-style configuration file.",
        discussion: """
            Builds the domain paused, waits until consoled serves console 0 and has published \
            every channel (so the guest's first byte is never lost), then unpauses it and prints \
            its domid. Relative kernel paths resolve against the configuration file's directory. \
            See docs/CONFIGURATION.md. Examples:

              conch create guest.cfg -c
              conch create guest.cfg --dry-run
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    @Argument(help: "The configuration file.")
    var configFile: String

    @Flag(name: .customShort("c"), help: "Attach to console 0 once the domain runs.")
    var attachConsole = false

    @Flag(help: "Print the parsed configuration as JSON and create nothing.")
    var dryRun = false

    @Flag(help: "Unpause at once, without waiting for consoled (hyperlaunch-style).")
    var noWait = false

    @Flag(help: "Leave the console page zeroed, as a builder before Xen 4.21 does.")
    var legacyBuilder = false

    @Option(help: "Seconds to wait for consoled before giving up.")
    var timeout: Double = 10

    func validate() throws {
        guard timeout > 0, timeout <= 3600 else {
            throw ValidationError("--timeout must be between 0 and 3600 seconds")
        }
    }

    func run() async throws {
        let text: String
        do {
            text = try String(contentsOfFile: configFile, encoding: .utf8)
        } catch {
            throw CLIError("cannot read \(configFile): \(error.localizedDescription)")
        }
        if dryRun {
            var report = DryRunReport.make(text: text, fileName: configFile)
            if var configuration = report.configuration {
                configuration.kernel = Self.resolveKernel(configuration.kernel, configFile: configFile)
                do {
                    try configuration.checkKernel(isExecutable: { FileManager.default.isExecutableFile(atPath: $0) })
                    report.configuration = configuration
                } catch {
                    report = DryRunReport(
                        configuration: nil,
                        warnings: report.warnings,
                        error: "\(configFile): \(error)"
                    )
                }
            }
            // As xl prints them, on stderr; the JSON on stdout carries them too.
            for warning in report.warnings { FileHandle.standardError.write(Data("\(warning)\n".utf8)) }
            if let error = report.error { FileHandle.standardError.write(Data("\(error)\n".utf8)) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            if report.error != nil { throw ExitCode.failure }
            return
        }
        let parsed: DomainConfiguration.Parsed
        do {
            parsed = try DomainConfiguration.parse(text, fileName: configFile)
        } catch {
            for warning in error.warnings { FileHandle.standardError.write(Data("\(warning)\n".utf8)) }
            throw CLIError(error.description)
        }
        for warning in parsed.warnings { FileHandle.standardError.write(Data("\(warning)\n".utf8)) }
        var configuration = parsed.configuration
        configuration.kernel = Self.resolveKernel(configuration.kernel, configFile: configFile)

        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        let created = try await Self.create(
            configuration,
            configFile: configFile,
            on: host,
            legacyBuilder: legacyBuilder,
            wait: noWait ? nil : .milliseconds(Int64(timeout * 1000))
        )
        print(created.domain.domid.rawValue)
        if attachConsole {
            try await ConsoleAttachment.attach(host: host, domain: created.domain, target: .primary, linger: 1)
        }
    }

    /// The mixed upgrade case: a 4.21-style page (DISCONNECTED until a backend says
    /// otherwise) for a flag-aware guest, and a backend that never touches the flag.
    static func flagUnawareBackendWarning(_ name: String) -> String {
        """
        warning: consoled runs with --legacy-flag and never marks a console CONNECTED, but \
        \(name)'s console page starts DISCONNECTED and its frontend reads the flag: console 0 \
        would stay silent (the seed's frontend writes to the hypervisor console, Linux 7.1's \
        drops). Create it with --legacy-builder, or run consoled without --legacy-flag.

        """
    }

    /// xl resolves a relative kernel against the working directory; Conch's
    /// kernels are programs that usually sit beside their configuration.
    static func resolveKernel(_ kernel: String, configFile: String) -> String {
        guard !kernel.hasPrefix("/") else { return kernel }
        let directory = URL(fileURLWithPath: configFile).deletingLastPathComponent().path
        return URL(fileURLWithPath: kernel, relativeTo: URL(fileURLWithPath: directory + "/")).standardized.path
    }

    /// Builds, records, waits for consoled (unless `wait` is nil) and unpauses.
    static func create(
        _ configuration: DomainConfiguration,
        configFile: String?,
        on host: HostConnection,
        legacyBuilder: Bool,
        wait: Duration?
    ) async throws -> DomainBuilder.Built {
        if !legacyBuilder, configuration.frontend.readsConnectionFlag,
            (try? await host.store.readString(ConsoleLayout.consoledSetsFlag)) == "0"
        {
            FileHandle.standardError.write(Data(flagUnawareBackendWarning(configuration.name).utf8))
        }
        let kernel = [ChildProcess.currentExecutable(), "guest-kernel", "--frontend", configuration.frontend.rawValue]
        let built: DomainBuilder.Built
        do {
            built = try await host.builder.build(configuration, legacyConsolePage: legacyBuilder, guestKernel: kernel)
        } catch let error as DomainBuilder.BuildError {
            throw CLIError(error.description)
        }
        let domid = built.domain.domid
        let record = DomainRecord(
            domid: domid.rawValue,
            configuration: configuration,
            plan: built.plan,
            configurationFile: configFile
        )
        try record.save(runDirectory: host.runDirectory.path)
        if let wait {
            do {
                try await ConsoleReadiness.wait(
                    for: built,
                    store: host.store,
                    hypervisor: host.hypervisor,
                    timeout: wait
                )
            } catch let error as DomainBuilder.BuildError {
                try? await host.builder.destroy(domid)
                DomainRecord.remove(runDirectory: host.runDirectory.path, domid: domid.rawValue)
                let hint =
                    HostConnection.isRunning(pidFile: host.runDirectory.consoledPidFile)
                    ? "consoled is running but did not serve the domain (see its log)"
                    : "consoled is not running in \(host.runDirectory): start it (`conch up`, or "
                        + "`conch consoled --run-dir \(host.runDirectory)`) or create with --no-wait"
                throw CLIError("domain not created: consoled not ready: \(error.description); \(hint)")
            }
        }
        try host.hypervisor.unpause(domid)
        return built
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List domains, like xl list.",
        discussion: "Example: conch list --json"
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    struct Row: Codable {
        var name: String
        var domid: UInt16
        var memory: Int?
        var vcpus: Int?
        var state: String
        var cpuSeconds: Double?
        var uuid: String?
    }

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        var rows = [
            Row(name: "Domain-0", domid: 0, memory: nil, vcpus: nil, state: "running", cpuSeconds: nil, uuid: nil)
        ]
        for domain in try host.hypervisor.listDomains() {
            let record = DomainRecord.load(runDirectory: host.runDirectory.path, domid: domain.domid.rawValue)
            rows.append(
                Row(
                    name: domain.name,
                    domid: domain.domid.rawValue,
                    memory: record?.configuration.memory,
                    vcpus: record?.configuration.vcpus,
                    state: domain.shutdownReason.map { "shutdown(\($0.rawValue))" } ?? domain.state.rawValue,
                    cpuSeconds: domain.pid.flatMap(ProcessStatistics.cpuTicks).map {
                        Double($0) / ProcessStatistics.ticksPerSecond
                    },
                    uuid: domain.uuid
                )
            )
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(rows), as: UTF8.self))
            return
        }
        print("Name                                        ID   Mem VCPUs\tState\tTime(s)")
        for row in rows {
            let name = row.name.padding(toLength: max(40, row.name.count), withPad: " ", startingAt: 0)
            let id = String(row.domid).leftPadded(5)
            let memory = String(row.memory ?? 0).leftPadded(5)
            let vcpus = String(row.vcpus ?? 1).leftPadded(5)
            let seconds = String(format: "%8.1f", row.cpuSeconds ?? 0)
            print("\(name) \(id) \(memory) \(vcpus)     \(Self.flags(row.state))  \(seconds)")
        }
    }

    /// xl's six state columns: r(unning) b(locked) p(aused) s(hutdown) c(rashed) d(ying).
    static func flags(_ state: String) -> String {
        var flags = Array("------")
        switch state {
        case "running": flags[0] = "r"
        case "paused": flags[2] = "p"
        case "dying": flags[5] = "d"
        case "shutdown(crash)": flags[4] = "c"
        default: if state.hasPrefix("shutdown") { flags[3] = "s" }
        }
        return String(flags)
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

struct Destroy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Destroy a domain at once (its program is killed), like xl destroy.",
        discussion: "Example: conch destroy web-1"
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    @Argument(help: "The domain: a name or a domid.")
    var domain: String

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        let target = try host.domain(domain)
        try await host.builder.destroy(target.domid)
        DomainRecord.remove(runDirectory: host.runDirectory.path, domid: target.domid.rawValue)
    }
}

struct Shutdown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a domain to shut down, like xl shutdown.",
        discussion: """
            Writes `poweroff` (or `reboot`) to the guest's control/shutdown node; the guest \
            kernel stops its program and the domain shuts down, then its on_poweroff action \
            applies. Example:

              conch shutdown -w web-1
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    @Argument(help: "The domain: a name or a domid.")
    var domain: String

    @Flag(name: .shortAndLong, help: "Wait until the domain has gone.")
    var wait = false

    @Flag(name: .shortAndLong, help: "Reboot instead of powering off.")
    var reboot = false

    @Option(help: "Seconds to wait with -w before giving up.")
    var timeout: Double = 30

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        let target = try host.domain(domain)
        let request = reboot ? "reboot" : "poweroff"
        try await host.store.write("/local/domain/\(target.domid.rawValue)/control/shutdown", request)
        guard wait else { return }
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        while ContinuousClock.now < deadline {
            let alive = try host.hypervisor.listDomains().contains { $0.domid == target.domid && $0.state != .dying }
            if !alive {
                DomainRecord.remove(runDirectory: host.runDirectory.path, domid: target.domid.rawValue)
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw CLIError(
            "domain \(target.name) did not shut down within \(timeout) s: its program may ignore SIGTERM; "
                + "`conch destroy \(target.name)` stops it at once"
        )
    }
}

struct ChannelListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channel-list",
        abstract: "List a domain's channels in xl channel-list's format.",
        discussion: "Example: conch channel-list web-1"
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    @Argument(help: "Domains: names or domids.")
    var domains: [String]

    func validate() throws {
        guard !domains.isEmpty else { throw ValidationError("name at least one domain") }
    }

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        var entries: [ChannelListEntry] = []
        for reference in domains {
            entries += await host.channelEntries(try host.domain(reference).domid.rawValue)
        }
        FileHandle.standardOutput.write(Data(ChannelList.format(entries).utf8))
    }
}

struct ChannelAttach: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channel-attach",
        abstract: "Hot-plug a channel into a running domain.",
        discussion: """
            SPEC is a channel specification as in a configuration file's channel list. The guest \
            sees $CONCH_GUEST_DEV/xen-channel/<name> appear. Prints the new channel's index. Example:

              conch channel-attach web-1 'name=org.example.log.0, connection=socket, path=/tmp/web-1.log.sock'
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    @Argument(help: "The domain: a name or a domid.")
    var domain: String

    @Argument(help: "The channel specification.")
    var spec: String

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        let target = try host.domain(domain)
        let (loaded, built) = try host.built(target)
        var record = loaded
        let devid = (record.configuration.channels.map(\.devid).max() ?? 0) + 1
        let parsed: ChannelConfiguration.ParseResult
        do {
            parsed = try ChannelConfiguration.parse(spec: spec, index: devid - 1)
        } catch {
            throw CLIError(error.message)
        }
        for warning in parsed.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        var configuration = record.configuration
        configuration.channels.append(parsed.channel)
        do {
            try configuration.validate()
            record.plan = try await host.builder.plugConsole(devid, of: configuration, into: built)
        } catch let error as DomainValidationError {
            throw CLIError(error.message)
        } catch let error as DomainBuilder.BuildError {
            throw CLIError(error.description)
        }
        record.configuration = configuration
        try record.save(runDirectory: host.runDirectory.path)
        print(devid - 1)
    }
}

struct ChannelDetach: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channel-detach",
        abstract: "Unplug a channel from a running domain.",
        discussion: """
            IDX is the channel's index in `conch channel-list`. The backend goes to Closing, the \
            guest closes its end (its xen-channel link disappears), consoled tears the channel \
            down, then the nodes are removed. Example:

              conch channel-detach web-1 1
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    @Argument(help: "The domain: a name or a domid.")
    var domain: String

    @Argument(help: "The channel index (channel-list's Idx).")
    var index: Int

    @Option(help: "Seconds to wait for the guest to close its end.")
    var timeout: Double = 10

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        let target = try host.domain(domain)
        var (record, _) = try host.built(target)
        let devid = index + 1
        guard let position = record.configuration.channels.firstIndex(where: { $0.devid == devid }) else {
            throw CLIError("domain \(target.name) has no channel \(index): see `conch channel-list \(target.name)`")
        }
        try await host.builder.unplugConsole(devid, of: record.plan)
        let state = "/local/domain/\(target.domid.rawValue)/device/console/\(devid)/state"
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        var closed = false
        while ContinuousClock.now < deadline {
            let value = try? await host.store.readString(state)
            if value == nil || value == "\(XenbusState.closed.rawValue)" {
                closed = true
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await host.builder.removeConsoleNodes(devid, of: record.plan)
        record.configuration.channels.remove(at: position)
        record.plan.consoles.removeAll { $0.devid == devid }
        try record.save(runDirectory: host.runDirectory.path)
        if !closed {
            FileHandle.standardError.write(
                Data("warning: the guest did not close channel \(index) within \(timeout) s; removed anyway\n".utf8)
            )
        }
    }
}
