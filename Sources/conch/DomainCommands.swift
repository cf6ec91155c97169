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
            print(try JSONOutput.string(report, pretty: true))
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
        let created = try await host.create(
            configuration,
            configFile: configFile,
            guestKernel: HostConnection.conchGuestKernel(configuration),
            legacyBuilder: legacyBuilder,
            wait: noWait ? nil : .milliseconds(Int64(timeout * 1000)),
            warn: { FileHandle.standardError.write(Data("\($0)\n".utf8)) }
        )
        print(created.domain.domid.rawValue)
        if attachConsole {
            try await ConsoleAttachment.attach(host: host, domain: created.domain, target: .primary)
        }
    }

    /// xl resolves a relative kernel against the working directory; Conch's
    /// kernels are programs that usually sit beside their configuration.
    static func resolveKernel(_ kernel: String, configFile: String) -> String {
        guard !kernel.hasPrefix("/") else { return kernel }
        let directory = URL(fileURLWithPath: configFile).deletingLastPathComponent().path
        return URL(fileURLWithPath: kernel, relativeTo: URL(fileURLWithPath: directory + "/")).standardized.path
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
            print(try JSONOutput.string(rows, pretty: true))
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

    @Argument(help: "The domain: a name or a domid.", completion: .domainNames)
    var domain: String

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        try await host.destroy(try host.domain(domain))
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

    @Argument(help: "The domain: a name or a domid.", completion: .domainNames)
    var domain: String

    @Flag(name: .shortAndLong, help: "Wait until the domain has gone.")
    var wait = false

    @Flag(name: .shortAndLong, help: "Reboot instead of powering off.")
    var reboot = false

    @Option(help: "Seconds to wait with -w before giving up.")
    var timeout: Double = 30

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        try await host.shutdown(
            try host.domain(domain),
            reboot: reboot,
            wait: wait ? .milliseconds(Int64(timeout * 1000)) : nil
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

    @Argument(help: "Domains: names or domids.", completion: .domainNames)
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

    @Argument(help: "The domain: a name or a domid.", completion: .domainNames)
    var domain: String

    @Argument(help: "The channel specification.")
    var spec: String

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        let (index, warnings) = try await host.attachChannel(spec, to: try host.domain(domain))
        for warning in warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        print(index)
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

    @Argument(help: "The domain: a name or a domid.", completion: .domainNames)
    var domain: String

    @Argument(help: "The channel index (channel-list's Idx).")
    var index: Int

    @Option(help: "Seconds to wait for the guest to close its end.")
    var timeout: Double = 10

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions.runDirectory)
        let closed = try await host.detachChannel(
            index: index,
            from: try host.domain(domain),
            timeout: .milliseconds(Int64(timeout * 1000))
        )
        if !closed {
            FileHandle.standardError.write(
                Data("warning: the guest did not close channel \(index) within \(timeout) s; removed anyway\n".utf8)
            )
        }
    }
}
