//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import ConsoleBackend
import ConsoleCore
import ConsoleKeeper
import Foundation
import Hypervisors
import Logging
import NIOPosix
import ServiceLifecycle
import SystemExtras
import SystemPackage
import ToolstackRuntime
import UnixSignals
import XenHypervisor
import XenSim
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

struct Consoled: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consoled",
        abstract: "Run the console backend: console 0, secondary consoles and channels of every domain.",
        discussion: """
            Serves every console and channel: a pty for console 0 and pty channels (the slave's \
            path goes into the frontend's tty node), a listening Unix socket (0600, one client at a \
            time) for socket channels. Marks each ring CONNECTED once it is served and \
            DISCONNECTED again on teardown or SIGTERM. Console 0's output goes to \
            <log-dir>/guest-<name>.log; SIGHUP reopens the logs. Example:

              conch consoled --run-dir /tmp/conch --timestamps

            On a Xen dom0 (or with --hypervisor xen) it is the host's console daemon, in place \
            of xenconsoled and of QEMU for channels: it reaches xenstore where Xen's tools do \
            ($XENSTORED_PATH, else /var/run/xenstored/socket), keeps its sockets in \
            /var/run/conch (or --run-dir) and console logs in /var/log/xen/console.
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @OptionGroup var hypervisorOptions: HypervisorOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: "Directory for console logs (default: <run-dir>/logs; on Xen, /var/log/xen/console).")
    var logDir: String?
    @Flag(help: "Prefix each log line with the date and time.")
    var timestamps = false
    @Flag(help: "Write guests' ESC bytes to the logs as '.', so that viewing a log cannot drive the terminal.")
    var replaceEscape = false
    @Option(help: "Rotate a log when it would grow past this many bytes (0: never).")
    var logMaxBytes: UInt64 = 0
    @Option(help: "Rotated logs to keep.")
    var logBackups = 5
    @Option(help: "Sustained output rate per console, bytes per second.")
    var rateBytes: UInt64 = TokenBucket.Configuration.default.rate
    @Option(help: "Burst per console, bytes.")
    var rateBurst: UInt64 = TokenBucket.Configuration.default.burst
    @Flag(help: "Never touch the console page's connection byte (behave like a pre-4.21 backend).")
    var legacyFlag = false

    @Option(help: "Serve Prometheus metrics on HOST:PORT (GET /metrics; 127.0.0.1:9110, say). Off by default.")
    var metrics: String?

    func validate() throws {
        guard rateBytes > 0, rateBurst > 0 else {
            throw ValidationError("--rate-bytes and --rate-burst must be positive")
        }
        guard logBackups >= 0, logBackups <= LogRotationPolicy.maximumBackups else {
            throw ValidationError("--log-backups must be between 0 and \(LogRotationPolicy.maximumBackups)")
        }
    }

    func run() async throws {
        let logger = logging.makeLogger(label: "conch.consoled")
        let placement = ConsoledPlacement(
            runDirectoryOptions: runDirectoryOptions,
            hypervisorOptions: hypervisorOptions
        )
        let runDirectory = placement.runDirectory
        raiseDescriptorLimit()
        try runDirectory.create()
        umask(0o077)  // sockets 0600, logs 0600
        let hypervisor = try HypervisorFactory.privileged(placement.backend)
        let store: XenstoreClient
        do {
            // xenstored may restart under us: the client reconnects and sets its watches again.
            store = try await XenstoreClient.connect(socketPath: placement.xenstoreSocket, reconnecting: true)
        } catch {
            throw CLIError("cannot reach xenstored at \(placement.xenstoreSocket): \(error) (\(placement.hint))")
        }
        let logLevel = logging.logLevel.rawValue
        let logFormat = logging.logFormat.rawValue
        let keeper: @Sendable () throws -> KeeperClient = {
            try KeeperClient.connectOrStart(runDirectory: runDirectory, logLevel: logLevel, logFormat: logFormat)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let daemon = ConsoleDaemon(
            configuration: .init(
                logDirectory: logDir ?? placement.logDirectory,
                statsSocket: runDirectory.consoledSocket,
                controlSocket: runDirectory.consoledControlSocket,
                sessionLockDirectory: runDirectory.sessionLockDirectory,
                timestamps: timestamps,
                replaceEscape: replaceEscape,
                logRotation: logMaxBytes == 0
                    ? .disabled : LogRotationPolicy(maxBytes: logMaxBytes, backups: logBackups),
                rate: TokenBucket.Configuration(rate: rateBytes, burst: rateBurst),
                legacyFlag: legacyFlag,
                metricsAddress: metrics,
                keeper: keeper
            ),
            hypervisor: hypervisor,
            store: store,
            eventLoop: group.next(),
            logger: logger
        )
        let pidFile = PidFile(path: runDirectory.consoledPidFile)
        try pidFile.write()
        defer { pidFile.remove() }
        let service = ConsoledService(daemon: daemon, logger: logger) {
            logger.info("consoled running", metadata: ["run-dir": "\(runDirectory)"])
            // Under systemd (Type=notify), ready once it serves.
            SystemdNotify.ready()
        }
        let services = ServiceGroup(
            configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await services.run()
        store.close()
        try await group.shutdownGracefully()
    }
}

/// Where consoled keeps its sockets and logs and finds xenstore: the run
/// directory with the simulator; Xen's places on a real dom0.
struct ConsoledPlacement {
    let backend: HypervisorFactory.Backend
    let runDirectory: RunDirectory
    let xenstoreSocket: String
    let logDirectory: String
    let hint: String

    /// Where xenconsoled writes guest logs (`xenconsoled --log=guest`).
    static let xenLogDirectory = "/var/log/xen/console"

    init(runDirectoryOptions: RunDirectoryOptions, hypervisorOptions: HypervisorOptions) {
        backend = hypervisorOptions.backend(runDirectory: runDirectoryOptions.runDirectory)
        switch backend {
        case .xen:
            runDirectory =
                runDirectoryOptions.explicitPath.map { RunDirectory(path: $0) }
                ?? RunDirectory(path: HostConnection.xenRunDirectory)
            xenstoreSocket = XenstoreClient.defaultSocketPath()
            logDirectory = Self.xenLogDirectory
            hint = "start the host's xenstored first"
        case .simulated(let directory):
            runDirectory = directory
            xenstoreSocket = directory.xenstoredSocket
            logDirectory = directory.logDirectory
            hint = "start `conch up`"
        }
    }
}

/// The sink keeper: socket channels' listeners and clients, held across consoled
/// restarts. consoled starts it; it is not meant to be run by hand.
struct ConsoledKeeper: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consoled-keeper",
        abstract: "Hold socket channels' listeners and clients across consoled restarts (started by consoled).",
        shouldDisplay: false
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let logger = logging.makeLogger(label: "conch.consoled-keeper")
        let runDirectory = runDirectoryOptions.runDirectory
        raiseDescriptorLimit()
        umask(0o077)
        signal(SIGPIPE, SIG_IGN)
        let pidFile = PidFile(path: runDirectory.keeperPidFile)
        try pidFile.write()
        defer { pidFile.remove() }
        try SinkKeeper(socketPath: runDirectory.keeperSocket, ledgerPath: runDirectory.keeperLedger, logger: logger)
            .run()
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print consoled's per-console counters.",
        discussion: "Example: conch stats web --json"
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @Flag(help: "Print JSON.") var json = false
    @Argument(help: "Only this domain (name or id).", completion: .domainNames) var domain: String?

    func run() async throws {
        let runDirectory = runDirectoryOptions.runDirectory
        let raw = try readAll(fromSocket: runDirectory.consoledSocket)
        var stats = try JSONDecoder().decode(ConsoledStats.self, from: Data(raw))
        if let domain {
            let domid = try resolveDomain(domain, runDirectory: runDirectory)
            stats.consoles = stats.consoles.filter { $0.domid == domid }
            stats.totals = ConsoleCounters.total(of: stats.consoles.map(\.counters))
        }
        if json {
            print(try JSONOutput.string(stats))
            return
        }
        print(
            "Dom Con Name                           Sink   State             Out        In  Full Throttled Drops Quar Session"
        )
        for console in stats.consoles {
            let c = console.counters
            print(
                [
                    pad("\(console.domid)", 3), pad("\(console.devid)", 3), pad(console.name, 30),
                    pad(console.connection, 6), pad(c.sinkState.rawValue, 16), pad("\(c.bytesOut)", 10, right: true),
                    pad("\(c.bytesIn)", 9, right: true), pad("\(c.ringFullEvents)", 5, right: true),
                    pad("\(c.throttledPeriods)", 9, right: true), pad("\(c.droppedBytes)", 5, right: true),
                    pad("\(c.quarantines)", 4, right: true), Self.session(console),
                ].joined(separator: " ")
            )
        }
    }

    /// Who is attached: a session's pid (pty), or whether a client is on the socket.
    private static func session(_ console: ConsoleStats) -> String {
        if let pid = console.sessionPid { return "pid \(pid)" }
        return console.clientConnected == true ? "client" : "-"
    }

    private func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let padding = String(repeating: " ", count: max(0, width - text.count))
        return right ? padding + text : text + padding
    }
}

/// Sends `request` (if any), then reads everything a Unix-socket server sends until it closes.
func readAll(fromSocket path: String, request: String? = nil) throws -> [UInt8] {
    do {
        return try UnixSocketPath.exchange(path, request: request.map { Array($0.utf8) })
    } catch {
        throw CLIError(
            "consoled is not running (nothing answers on \(path)): start the host stack with `conch up --detach`"
        )
    }
}

/// A domain given as a name or an id, as xl takes it.
func resolveDomain(_ text: String, runDirectory: RunDirectory) throws -> UInt16 {
    if text == "0" { return 0 }  // dom0: consoled serves none of its consoles, but it is a domain
    let domains = try HypervisorFactory.privileged(.simulated(runDirectory)).listDomains()
    if let found = HostConnection.find(text, in: domains) { return found.domid.rawValue }
    throw CLIError("no domain named or numbered '\(text)' (see `conch list`)")
}
