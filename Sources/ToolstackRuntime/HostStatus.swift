//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import Hypervisors
import SystemExtras
import XenHypervisor
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// `conch status`: is the host stack of a run directory healthy? Each daemon is
/// judged by what a client sees — its pid alive and its socket answering a real
/// request — not by its pid file alone.
public struct HostStatus: Encodable, Sendable {
    public struct Daemon: Codable, Sendable {
        public var name: String
        public var pid: Int32?
        /// It answered a request on its socket (for the keeper: its pid is alive).
        public var healthy: Bool
        /// What it said, or what is wrong: "answers in 0.3 ms", "no process".
        public var detail: String
    }

    public var runDirectory: String
    /// `conch up`'s supervisor, if one runs.
    public var supervisorPid: Int32?
    public var daemons: [Daemon]
    public var guests: [String]
    public var healthy: Bool { daemons.allSatisfy(\.healthy) }

    enum CodingKeys: String, CodingKey {
        case runDirectory = "run_directory"
        case supervisorPid = "supervisor_pid"
        case daemons, guests, healthy
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(runDirectory, forKey: .runDirectory)
        try container.encodeIfPresent(supervisorPid, forKey: .supervisorPid)
        try container.encode(daemons, forKey: .daemons)
        try container.encode(guests, forKey: .guests)
        try container.encode(healthy, forKey: .healthy)
    }

    /// Probes the simulated host stack in `runDirectory`; `supervisorPidFile` is
    /// where `conch up` keeps its pid.
    public static func probe(_ runDirectory: RunDirectory, supervisorPidFile: String) async -> HostStatus {
        var daemons: [Daemon] = []
        var guests: [String] = []

        let hypervisorPid = PidFile(path: runDirectory.hypervisorPidFile).livePid()
        var started = ContinuousClock.now
        if let domains = try? HypervisorFactory.privileged(.simulated(runDirectory)).listDomains() {
            guests = domains.filter { $0.domid != .dom0 }.map {
                "\($0.name) (\($0.domid.rawValue), \($0.state.rawValue))"
            }
            daemons.append(
                Daemon(name: "hypervisor", pid: hypervisorPid, healthy: true, detail: "answers in \(since(started))")
            )
        } else {
            daemons.append(
                Daemon(name: "hypervisor", pid: hypervisorPid, healthy: false, detail: silent(hypervisorPid))
            )
        }

        let xenstoredPid = PidFile(path: runDirectory.xenstoredPidFile).livePid()
        started = .now
        if let store = try? await XenstoreClient.connect(socketPath: runDirectory.xenstoredSocket),
            let entries = try? await store.directory("/local/domain")
        {
            store.close()
            daemons.append(
                Daemon(
                    name: "xenstored",
                    pid: xenstoredPid,
                    healthy: true,
                    detail: "answers in \(since(started)) (\(entries.count) domains in /local/domain)"
                )
            )
        } else {
            daemons.append(Daemon(name: "xenstored", pid: xenstoredPid, healthy: false, detail: silent(xenstoredPid)))
        }

        let consoledPid = PidFile(path: runDirectory.consoledPidFile).livePid()
        started = .now
        if let raw = try? UnixSocketPath.exchange(runDirectory.consoledSocket, request: nil),
            let stats = try? JSONDecoder().decode(ConsoledStats.self, from: Data(raw))
        {
            let quarantined = stats.consoles.filter { $0.counters.quarantineReason != nil }.count
            daemons.append(
                Daemon(
                    name: "consoled",
                    pid: consoledPid,
                    healthy: true,
                    detail: "answers in \(since(started)); serves \(stats.consoles.count) "
                        + (stats.consoles.count == 1 ? "console" : "consoles") + ", \(quarantined) quarantined"
                )
            )
            let keeperPid = PidFile(path: runDirectory.keeperPidFile).livePid()
            daemons.append(
                Daemon(
                    name: "consoled-keeper",
                    pid: keeperPid,
                    healthy: keeperPid != nil,
                    detail: keeperPid != nil ? "running (holds socket channels across consoled restarts)" : "no process"
                )
            )
        } else {
            daemons.append(Daemon(name: "consoled", pid: consoledPid, healthy: false, detail: silent(consoledPid)))
        }
        return HostStatus(
            runDirectory: runDirectory.path,
            supervisorPid: PidFile(path: supervisorPidFile).livePid(),
            daemons: daemons,
            guests: guests
        )
    }

    static func silent(_ pid: Int32?) -> String {
        pid == nil ? "no process" : "pid \(pid!) is alive but its socket does not answer"
    }

    static func since(_ start: ContinuousClock.Instant) -> String {
        let elapsed = ContinuousClock.now - start
        let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        return String(format: "%.1f ms", milliseconds)
    }
}
