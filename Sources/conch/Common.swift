//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Hypervisors
import Logging
import SystemExtras
import ToolstackRuntime
import XenstoreClient

/// `--run-dir`, shared by every subcommand that touches the host stack.
struct RunDirectoryOptions: ParsableArguments {
    @Option(
        name: .customLong("run-dir"),
        help: "Run directory (default: $CONCH_RUN_DIR, else $XDG_RUNTIME_DIR/conch, else /tmp/conch-$UID)."
    )
    var explicitPath: String?

    var runDirectory: RunDirectory {
        RunDirectory.resolve(explicit: explicitPath, environment: XenstoreClient.currentEnvironment())
    }

    /// An existing run directory must be one this user made (see `RunDirectory.verify()`).
    func validate() throws {
        try runDirectory.verify()
    }
}

/// `--hypervisor`, for the commands that also run on a real Xen host.
struct HypervisorOptions: ParsableArguments {
    @Option(
        help: """
            Which hypervisor to serve: auto (the real Xen when this host is a Xen dom0, \
            else the simulator in the run directory), simulated, or xen.
            """
    )
    var hypervisor: HypervisorFactory.Choice = .auto

    func backend(runDirectory: RunDirectory) -> HypervisorFactory.Backend {
        HypervisorFactory.backend(hypervisor, runDirectory: runDirectory)
    }
}

extension HypervisorFactory.Choice: ExpressibleByArgument {}

/// `--log-level`, shared by the daemons.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(help: "Log lines as text (for a person) or json (one object per line, for a log pipeline).")
    var logFormat: LogFormat = .text

    enum LogFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    func makeLogger(label: String) -> Logger {
        let level = logLevel
        let format = logFormat
        LoggingSystem.bootstrap { name in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: name)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: name)
                handler.logLevel = level
                return handler
            }
        }
        return Logger(label: label)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

extension HostConnection {
    /// The host `--hypervisor` and `--run-dir` name.
    static func open(
        _ runDirectoryOptions: RunDirectoryOptions,
        _ hypervisorOptions: HypervisorOptions
    ) async throws -> HostConnection {
        try await open(
            hypervisorOptions.backend(runDirectory: runDirectoryOptions.runDirectory),
            explicitRunDirectory: runDirectoryOptions.explicitPath
        )
    }
}

/// A command-line failure: printed as `Error: <message>` and exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension CompletionKind {
    /// The names of the domains of the run directory the command line names (or the
    /// default one), for shell completion: `conch console <TAB>`.
    static var domainNames: CompletionKind {
        .custom { words, _, _ in
            let runDirectory = RunDirectory.resolve(
                explicit: completedRunDirectory(words),
                environment: XenstoreClient.currentEnvironment()
            )
            let domains = (try? HypervisorFactory.privileged(.simulated(runDirectory)).listDomains()) ?? []
            return domains.filter { $0.domid.rawValue != 0 }.map(\.name).sorted()
        }
    }

    /// The channel names of the domain already on the command line: `--channel <TAB>`.
    static var channelNames: CompletionKind {
        .custom { words, _, _ async in
            let runDirectory = RunDirectory.resolve(
                explicit: completedRunDirectory(words),
                environment: XenstoreClient.currentEnvironment()
            )
            guard let host = try? await HostConnection.open(runDirectory) else { return [] }
            defer { host.store.close() }
            let domains = (try? host.hypervisor.listDomains()) ?? []
            // The first word naming one of the domains is the command's domain.
            guard let domain = words.lazy.compactMap({ HostConnection.find($0, in: domains) }).first else { return [] }
            return await host.channelNames(domain.domid.rawValue)
        }
    }
}

/// The value of `--run-dir` among the words being completed, if given.
private func completedRunDirectory(_ words: [String]) -> String? {
    if let index = words.firstIndex(of: "--run-dir"), index + 1 < words.count { return words[index + 1] }
    return words.first { $0.hasPrefix("--run-dir=") }.map { String($0.dropFirst("--run-dir=".count)) }
}
