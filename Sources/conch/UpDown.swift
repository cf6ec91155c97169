//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Foundation
import HostSupervision
import Hypervisors
import Logging
import ServiceLifecycle
import SystemExtras
import SystemPackage
import ToolstackRuntime
import XenSim
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the host stack (hypervisor, xenstored, consoled) and supervise it.",
        discussion: """
            In the foreground, Ctrl-C stops everything cleanly; a daemon that dies is restarted \
            and the restart is logged. Daemon logs go to <run-dir>/logs/<daemon>.log. Examples:

              conch up --detach          # then: conch create guest.cfg; …; conch down
              conch up --no-consoled     # start consoled later by hand (late-backend experiments)
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    @Flag(help: "Return once everything is ready; the supervisor keeps running in the background.")
    var detach = false

    @Flag(help: "Start only the hypervisor and xenstored.")
    var noConsoled = false

    @Option(help: "Daemon log level: trace, debug, info, notice, warning, error, critical (log.level).")
    var logLevel: String?

    @Option(help: "Daemon log format: text, or json (one object per line) (log.format).")
    var logFormat: String?

    @Option(
        name: .customLong("set"),
        help: ArgumentHelp(
            "A daemon option, as KEY=VALUE (repeatable), over CONCH_* variables and the file.",
            discussion: "Keys: \(StackConfiguration.Setting.allCases.map(\.rawValue).joined(separator: ", "))."
        )
    )
    var settings: [String] = []

    @Option(help: "A JSON configuration file (default: /etc/conch/conch.json if it exists).")
    var config: String?

    /// The daemons' options from --set (and the shortcuts), CONCH_* and the file.
    func stackConfiguration() async throws -> StackConfiguration {
        var flags = settings
        if let logLevel { flags.append("log.level=\(logLevel)") }
        if let logFormat { flags.append("log.format=\(logFormat)") }
        let file = config ?? (FileManager.default.fileExists(atPath: Self.systemConfig) ? Self.systemConfig : nil)
        do {
            return try await StackConfiguration.resolve(
                flags: flags,
                environment: ProcessInfo.processInfo.environment,
                file: file
            )
        } catch let invalid as StackConfiguration.Invalid {
            throw CLIError(invalid.description)
        }
    }

    static let systemConfig = "/etc/conch/conch.json"

    func run() async throws {
        let runDirectory = runDirectoryOptions.runDirectory
        try runDirectory.create()
        let configuration = try await stackConfiguration()
        if detach {
            try startDetached(runDirectory, configuration: configuration)
            return
        }
        let pidFile = PidFile(path: HostSupervisor.pidFile(runDirectory))
        if let pid = pidFile.read(), kill(pid, 0) == 0, pid != getpid() {
            throw CLIError("the host stack is already up in \(runDirectory) (pid \(pid)): `conch down` stops it")
        }
        let supervisor = HostSupervisor(runDirectory: runDirectory, configuration: configuration)
        do {
            try supervisor.start(noConsoled ? ["hypervisor", "xenstored"] : ["hypervisor", "xenstored", "consoled"])
        } catch {
            supervisor.stopAll()
            throw error
        }
        try pidFile.write()
        defer { pidFile.remove() }
        Self.say("up in \(runDirectory): \(supervisor.isRunning.joined(separator: ", ")) (Ctrl-C stops)")
        Self.say("export XENSTORED_PATH=\(runDirectory.xenstoredSocket)")
        // The supervisor and the reaper of domains that end on their own, as one
        // service group: SIGTERM or SIGINT stops the reaper, then the daemons.
        var logger = Logger(label: "conch.up")
        logger.logLevel = .warning
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: SupervisionService(supervisor: supervisor) { Self.say($0) }),
                    // The reaper needs xenstored; if it cannot start, the stack still runs.
                    .init(service: ReaperService(runDirectory: runDirectory), successTerminationBehavior: .ignore),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        try? FileManager.default.removeItem(atPath: DomainRecord.directory(runDirectory: runDirectory.path))
        Self.say("stopped")
    }

    /// Domains that end on their own leave records and xenstore trees: reap them.
    struct ReaperService: Service {
        let runDirectory: RunDirectory

        func run() async throws {
            guard let hypervisor = try? HypervisorFactory.privileged(.simulated(runDirectory)),
                let store = try? await XenstoreClient.connect(
                    socketPath: runDirectory.xenstoredSocket,
                    reconnecting: true
                )
            else { return }
            defer { store.close() }
            await cancelWhenGracefulShutdown {
                await DomainReaper(hypervisor: hypervisor, store: store, runDirectory: runDirectory.path).run()
            }
        }
    }

    static func say(_ line: String) {
        FileHandle.standardError.write(Data("[conch up] \(line)\n".utf8))
    }

    /// Runs `conch up` (without --detach) in its own process group, logging to
    /// `up.log` in the daemons' log directory, and waits until it reports ready in `up.pid`.
    private func startDetached(_ runDirectory: RunDirectory, configuration: StackConfiguration) throws {
        let pidPath = HostSupervisor.pidFile(runDirectory)
        if let pid = PidFile(path: pidPath).read(), kill(pid, 0) == 0 {
            throw CLIError("the host stack is already up in \(runDirectory) (pid \(pid)): `conch down` stops it")
        }
        let logDirectory = configuration.logDirectory(for: runDirectory)
        try FileManager.default.createDirectory(
            atPath: logDirectory,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        let logPath = logDirectory + "/up.log"
        // The resolved settings, so that the background supervisor runs with exactly these.
        var arguments = ["up", "--run-dir", runDirectory.path]
        if let config { arguments += ["--config", config] }
        for setting in StackConfiguration.Setting.allCases {
            if let value = configuration[setting] { arguments += ["--set", "\(setting.rawValue)=\(value)"] }
        }
        if noConsoled { arguments.append("--no-consoled") }
        let child = try ChildProcess.logging(
            to: logPath,
            executable: ChildProcess.currentExecutable(),
            arguments: arguments,
            newProcessGroup: true
        )
        for _ in 0..<3000 {
            if PidFile(path: pidPath).read() == child.pid {
                print(
                    "Conch is up in \(runDirectory) (supervisor pid \(child.pid); logs in "
                        + "\(configuration.logDirectory(for: runDirectory)))"
                )
                print("For Xen's own tools (xenstore-*, xenconsole):")
                print("export XENSTORED_PATH=\(runDirectory.xenstoredSocket)")
                return
            }
            if let ended = try? child.poll() {
                let tail = (try? String(contentsOfFile: logPath, encoding: .utf8))?.split(separator: "\n").suffix(6)
                throw CLIError("conch up failed (\(ended)); \(logPath) ends:\n" + (tail?.joined(separator: "\n") ?? ""))
            }
            usleep(10_000)
        }
        child.kill(SIGTERM)
        throw CLIError("the host stack did not come up within 30 s; see \(logPath)")
    }
}

struct Down: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Destroy every domain and stop the host stack started by `conch up`.",
        discussion: "Example: conch down"
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    func run() async throws {
        let runDirectory = runDirectoryOptions.runDirectory
        var destroyed = 0
        if let host = try? await HostConnection.open(runDirectory) {
            for domain in (try? host.hypervisor.listDomains()) ?? [] {
                try? await host.builder.destroy(domain.domid)
                destroyed += 1
            }
            host.store.close()
        }
        try? FileManager.default.removeItem(atPath: DomainRecord.directory(runDirectory: runDirectory.path))
        var stopped: [String] = []
        if let pid = PidFile(path: HostSupervisor.pidFile(runDirectory)).read(), kill(pid, 0) == 0 {
            kill(pid, SIGTERM)
            guard Self.waitGone(pid, seconds: 20) else {
                throw CLIError("the supervisor (pid \(pid)) did not stop within 20 s; see up.log in its log directory")
            }
            stopped.append("supervisor")
        }
        // Daemons started by hand (or left by a supervisor that was killed).
        for (name, pidFile) in [
            ("consoled", runDirectory.consoledPidFile), ("consoled-keeper", runDirectory.keeperPidFile),
            ("hypervisor", runDirectory.hypervisorPidFile), ("xenstored", runDirectory.xenstoredPidFile),
        ] {
            guard let pid = PidFile(path: pidFile).read(), kill(pid, 0) == 0 else { continue }
            kill(pid, SIGTERM)
            if !Self.waitGone(pid, seconds: 5) { kill(pid, SIGKILL) }
            stopped.append(name)
        }
        if stopped.isEmpty && destroyed == 0 {
            print("nothing was running in \(runDirectory)")
        } else {
            print("destroyed \(destroyed) domain(s); stopped \(stopped.joined(separator: ", "))")
        }
    }

    static func waitGone(_ pid: Int32, seconds: Double) -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if kill(pid, 0) != 0 { return true }
            usleep(10_000)
        }
        return false
    }
}
