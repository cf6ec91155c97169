//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleBackend
import ConsoleCore
import Foundation
import HostSupervision
import SystemExtras
import Toolstack
import ToolstackRuntime
import XenHypervisor
import XenRing

#if canImport(Glibc)
import Glibc
#endif

/// `conch bench scale`'s figures.
public struct ScaleBenchmarkResult: Codable, Sendable {
    public var consoles: Int
    public var allConnectedS: Double
    public var buildS: Double
    public var ratio: Double
    public var idleCPUPercent: Double
    public var consoledRSSMB: Double
    public var consoledRSSEmptyMB: Double
    /// One guest streaming through a socket channel before the other consoles
    /// exist and again among them (median of three runs each, MB/s).
    public var busyAloneMBps: Double
    public var busyAmongMBps: Double
    public var busyRatio: Double

    enum CodingKeys: String, CodingKey {
        case consoles
        case allConnectedS = "all_connected_s"
        case buildS = "build_s"
        case ratio
        case idleCPUPercent = "idle_cpu_percent"
        case consoledRSSMB = "consoled_rss_mb"
        case consoledRSSEmptyMB = "consoled_rss_empty_mb"
        case busyAloneMBps = "busy_alone_mbps"
        case busyAmongMBps = "busy_among_mbps"
        case busyRatio = "busy_ratio"
    }
}

/// One consoled serving many consoles: time until all are connected (beside the
/// time the toolstack took to build them, in the same run), consoled's idle CPU
/// and its resident memory (beside its memory with none), and one busy console's
/// throughput among them (beside its throughput alone).
public enum ScaleBenchmark {
    public static func run(
        conchExecutable: String,
        consoles: Int,
        idleSeconds: Double,
        concurrency: Int,
        progress: (String) -> Void = { _ in }
    ) async throws -> ScaleBenchmarkResult {
        raiseDescriptorLimit()
        try checkPseudoTerminals(for: consoles)
        let scratch = try RunDirectory.makeTemporary(prefix: "conch-bench")
        defer { try? FileManager.default.removeItem(atPath: scratch.path) }
        let supervisor = HostSupervisor(runDirectory: scratch, configuration: .quiet)
        try supervisor.start(["hypervisor", "xenstored", "consoled"])
        defer { supervisor.stopAll() }
        guard let consoled = PidFile(path: scratch.consoledPidFile).read() else {
            throw BenchmarkError("consoled wrote no pid file")
        }
        let emptyRSS = megabytes(ProcessStatistics.residentBytes(consoled))
        let host = try await HostConnection.open(scratch)
        let builder = host.builder

        // The busy console: a guest that streams into a socket channel on request.
        let busyBytes = 16 << 20
        let busySocket = scratch.path + "/busy.sock"
        let busy = try await builder.build(
            try ConsoleBenchmark.configuration(
                name: "busy",
                socket: busySocket,
                script: ConsoleBenchmark.streamerScript(bytes: busyBytes)
            ),
            guestKernel: [conchExecutable, "guest-kernel"]
        )
        try host.hypervisor.unpause(busy.domain.domid)
        let busyStream = try await ConsoleBenchmark.connect(busySocket)
        defer { close(busyStream) }
        func busyThroughput() throws -> Double {
            let runs = try (0..<3).map { _ in try ConsoleBenchmark.streamOnce(busyStream, bytes: busyBytes) }
            return runs.sorted()[1]
        }
        let busyAlone = try busyThroughput()
        progress("one busy console alone: \(Int(busyAlone)) MB/s")

        let start = ContinuousClock.now
        var pages: [ConsoleRing<GuestPage>] = []
        // Built by `concurrency` tasks at once, as a toolstack creating many guests
        // would (`bench create` does 100 `conch create`s at once).
        let hypervisor = host.hypervisor
        try await withThrowingTaskGroup(of: ConsoleRing<GuestPage>.self) { group in
            var next = 0
            func addBuild() {
                let index = next
                next += 1
                group.addTask {
                    var configuration = try DomainConfiguration.parse(
                        "name = \"s\(index)\"\nkernel = \"/bin/sleep\"\nextra = \"3600\"\n",
                        fileName: "scale.cfg"
                    ).configuration
                    configuration.uuid = nil
                    let built = try await builder.build(configuration, pageCount: 4)
                    try hypervisor.unpause(built.domain.domid)
                    let page = try hypervisor.mapForeign(
                        built.domain.domid,
                        frame: built.domain.start.consoleFrame,
                        readOnly: true
                    )
                    return ConsoleRing(memory: page)
                }
            }
            while next < min(concurrency, consoles) { addBuild() }
            for try await ring in group {
                pages.append(ring)
                if next < consoles { addBuild() }
                if pages.count % 200 == 0 { progress("built \(pages.count) domains") }
            }
        }
        let buildSeconds = start.duration(to: .now).seconds
        while pages.contains(where: { $0.connection != .connected }) {
            guard start.duration(to: .now) < .seconds(300) else {
                let waiting = pages.filter { $0.connection != .connected }.count
                throw BenchmarkError("\(waiting) of \(consoles) consoles still not connected after 300 s")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        let connectedSeconds = start.duration(to: .now).seconds
        let served = try JSONDecoder().decode(
            ConsoledStats.self,
            from: Data(try UnixSocketPath.exchange(scratch.consoledSocket))
        ).consoles.count
        // Every domain's console 0, plus the busy guest's channel.
        guard served == consoles + 2 else {
            throw BenchmarkError("consoled reports \(served) consoles, expected \(consoles + 2)")
        }
        progress("all \(consoles) consoles connected after \(rounded(connectedSeconds, places: 2)) s")

        try await Task.sleep(for: .seconds(1))  // let the burst of setup work settle
        let before = ProcessStatistics.cpuTicks(consoled) ?? 0
        let idleStart = ContinuousClock.now
        try await Task.sleep(for: .milliseconds(Int64(idleSeconds * 1000)))
        let ticks = (ProcessStatistics.cpuTicks(consoled) ?? before) - before
        let idleCPU = Double(ticks) / ProcessStatistics.ticksPerSecond / idleStart.duration(to: .now).seconds * 100
        let rss = megabytes(ProcessStatistics.residentBytes(consoled))
        let busyAmong = try busyThroughput()
        progress("the busy console among \(consoles): \(Int(busyAmong)) MB/s")
        host.store.close()

        return ScaleBenchmarkResult(
            consoles: consoles,
            allConnectedS: rounded(connectedSeconds, places: 2),
            buildS: rounded(buildSeconds, places: 2),
            ratio: rounded(connectedSeconds / buildSeconds, places: 2),
            idleCPUPercent: rounded(idleCPU, places: 2),
            consoledRSSMB: rounded(rss, places: 1),
            consoledRSSEmptyMB: rounded(emptyRSS, places: 1),
            busyAloneMBps: rounded(busyAlone),
            busyAmongMBps: rounded(busyAmong),
            busyRatio: rounded(busyAmong / max(busyAlone, 0.001), places: 2)
        )
    }

    /// Each console 0 holds a pty on the host, as under xenconsoled, and Linux
    /// allows `kernel.pty.max` of them (4096 by default, 1024 of those reserved
    /// for the initial devpts instance). Fails naming the setting when `consoles`
    /// more would not fit, instead of failing thousands of consoles later.
    static func checkPseudoTerminals(for consoles: Int) throws {
        func value(_ name: String) -> Int? {
            (try? String(contentsOfFile: "/proc/sys/kernel/pty/" + name, encoding: .utf8))
                .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        guard let maximum = value("max"), let inUse = value("nr"), let reserve = value("reserve") else { return }
        let needed = inUse + consoles + reserve
        guard needed > maximum else { return }
        throw BenchmarkError(
            "\(consoles) consoles need \(consoles) ptys, and kernel.pty.max allows \(maximum) (\(inUse) in use, "
                + "\(reserve) reserved): raise it first, e.g. `sysctl -w kernel.pty.max=\(needed + 1024)`"
        )
    }

    /// Bytes in MB (10^6), 0 when unknown.
    static func megabytes(_ bytes: UInt64?) -> Double { Double(bytes ?? 0) / 1e6 }
}
