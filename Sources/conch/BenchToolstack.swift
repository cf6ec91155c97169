//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import ConchBench
import ConsoleBackend
import Foundation
import HostSupervision
import SystemExtras
import SystemPackage
import Toolstack
import ToolstackRuntime
import XenHypervisor
import XenRing

#if canImport(Glibc)
import Glibc
#endif

struct CreateBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "`conch create -c` to the guest's first console byte, beside spawning the same program bare.",
        discussion: """
            Starts the host stack in a scratch run directory. Each round runs `conch create -c CFG` \
            as a user would and times until the first byte of console 0 reaches that client; the \
            baseline, measured in the same run, spawns the guest's program directly and times its \
            first byte on a pipe. Then creates --parallel guests at once and times until all run. \
            Example:

              swift run -c release conch bench create --json
            """
    )

    @Flag(help: "Print one JSON object and nothing else on stdout.")
    var json = false

    @Option(help: "Sequential creates to time.")
    var rounds = 50

    @Option(help: "Guests created at once for create_100_s.")
    var parallel = 100

    func validate() throws {
        guard rounds >= 5, parallel >= 1 else { throw ValidationError("--rounds >= 5 and --parallel >= 1") }
    }

    struct Result: Codable {
        var createToFirstByteP50Ms: Double
        var createToFirstByteP99Ms: Double
        var spawnToFirstByteP50Ms: Double
        var ratio: Double
        var create100S: Double
        var parallel: Int
        var rounds: Int

        enum CodingKeys: String, CodingKey {
            case createToFirstByteP50Ms = "create_to_first_byte_p50_ms"
            case createToFirstByteP99Ms = "create_to_first_byte_p99_ms"
            case spawnToFirstByteP50Ms = "spawn_to_first_byte_p50_ms"
            case ratio
            case create100S = "create_100_s"
            case parallel
            case rounds
        }
    }

    func run() async throws {
        if isDebugBuild {
            FileHandle.standardError.write(Data("note: debug build; use `swift run -c release conch bench …`\n".utf8))
        }
        let scratch = try RunDirectory.makeTemporary(prefix: "conch-bench")
        defer { try? FileManager.default.removeItem(atPath: scratch.path) }
        let supervisor = HostSupervisor(runDirectory: scratch, logLevel: "warning")
        try supervisor.start(["hypervisor", "xenstored", "consoled"])
        defer { supervisor.stopAll() }
        let conch = ChildProcess.currentExecutable()
        let program = ["/bin/sh", "-c", "echo ready; sleep 5"]

        // Baseline: the same program, spawned bare, its first byte on a pipe.
        var baseline = LatencySamples()
        for _ in 0..<rounds {
            let start = ContinuousClock.now
            let (process, output) = try spawnReading(program[0], Array(program.dropFirst()))
            _ = nextByte(output)
            baseline.record(start.duration(to: .now))
            process.kill(SIGKILL)
            _ = try? process.wait()
            close(output)
        }

        var samples = LatencySamples()
        for round in 0..<rounds {
            let file = scratch.path + "/c\(round).cfg"
            try """
            name = "c\(round)"
            kernel = "\(program[0])"
            extra = "-c '\(program[2])'"
            on_poweroff = "destroy"

            """.write(toFile: file, atomically: true, encoding: .utf8)
            let start = ContinuousClock.now
            let (process, output) = try spawnReading(conch, ["create", "-c", file, "--run-dir", scratch.path])
            // The domid line comes first; the console's first byte follows it.
            guard firstByteAfterLine(output) else {
                throw CLIError("round \(round): no console byte from `conch create -c`")
            }
            samples.record(start.duration(to: .now))
            process.kill(SIGTERM)
            _ = try? process.wait()
            close(output)
            _ = try? runQuiet(conch, ["destroy", "c\(round)", "--run-dir", scratch.path])
            if !json, round % 10 == 9 {
                print("create→first byte: \(round + 1) rounds, p50 \(rounded(samples.p50 / 1000, places: 2)) ms")
            }
        }

        // Many at once: every `conch create` returns once its domain runs.
        var files: [String] = []
        for index in 0..<parallel {
            let file = scratch.path + "/p\(index).cfg"
            try "name = \"p\(index)\"\nkernel = \"/bin/sleep\"\nextra = \"30\"\n".write(
                toFile: file,
                atomically: true,
                encoding: .utf8
            )
            files.append(file)
        }
        let start = ContinuousClock.now
        let creators = try files.map { file in
            try ChildProcess(
                executable: conch,
                arguments: ["create", file, "--run-dir", scratch.path, "--timeout", "120"],
                descriptors: [1: FileDescriptor(rawValue: open("/dev/null", O_WRONLY | O_CLOEXEC))]
            )
        }
        var failures = 0
        for creator in creators where (try? creator.wait()) != .exited(0) { failures += 1 }
        let parallelSeconds = start.duration(to: .now).seconds
        guard failures == 0 else { throw CLIError("\(failures) of \(parallel) parallel creates failed") }

        let result = Result(
            createToFirstByteP50Ms: rounded(samples.p50 / 1000, places: 2),
            createToFirstByteP99Ms: rounded(samples.p99 / 1000, places: 2),
            spawnToFirstByteP50Ms: rounded(baseline.p50 / 1000, places: 2),
            ratio: rounded(samples.p50 / baseline.p50, places: 1),
            create100S: rounded(parallelSeconds, places: 2),
            parallel: parallel,
            rounds: rounds
        )
        if json {
            print(try benchmarkJSON(result))
        } else {
            print(
                "create -c → first console byte: p50 \(result.createToFirstByteP50Ms) ms, p99 "
                    + "\(result.createToFirstByteP99Ms) ms = \(result.ratio) × spawning the program bare "
                    + "(\(result.spawnToFirstByteP50Ms) ms)"
            )
            print("\(parallel) creates in parallel: \(result.create100S) s")
        }
    }

    /// Spawns a program with its stdout on a pipe; returns the read end.
    private func spawnReading(_ executable: String, _ arguments: [String]) throws -> (ChildProcess, Int32) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw CLIError("pipe failed: errno \(errno)") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        defer { close(ends[1]) }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        let process = try ChildProcess(
            executable: executable,
            arguments: arguments,
            descriptors: [0: FileDescriptor(rawValue: null), 1: FileDescriptor(rawValue: ends[1])]
        )
        return (process, ends[0])
    }

    /// The next byte, waiting up to 10 s; nil on timeout or end of stream.
    private func nextByte(_ descriptor: Int32) -> UInt8? {
        var byte: UInt8 = 0
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 10_000) > 0 && read(descriptor, &byte, 1) == 1 ? byte : nil
    }

    /// Whether a byte arrives after the first line (`create -c` prints the domid first).
    private func firstByteAfterLine(_ descriptor: Int32) -> Bool {
        while let byte = nextByte(descriptor) {
            if byte == UInt8(ascii: "\n") { return nextByte(descriptor) != nil }
        }
        return false
    }

    private func runQuiet(_ executable: String, _ arguments: [String]) throws -> ChildProcess.Termination {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        let process = try ChildProcess(
            executable: executable,
            arguments: arguments,
            descriptors: [1: FileDescriptor(rawValue: null), 2: FileDescriptor(rawValue: null)]
        )
        return try process.wait()
    }
}

extension Duration {
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

struct AllBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "Run every benchmark; print one table, or one JSON object keyed by benchmark.",
        discussion: """
            Runs `conch bench ring`, `xenstore`, `evtchn`, `console`, `scale` and `create`, each \
            as its own process with --json. Example:

              swift run -c release conch bench all --json
            """
    )

    @Flag(help: "Print one JSON object keyed by benchmark.")
    var json = false

    @Flag(help: "Smaller runs (for a smoke test, not for figures).")
    var quick = false

    func run() throws {
        let conch = ChildProcess.currentExecutable()
        var arguments: [(String, [String])] = [
            ("ring", []), ("xenstore", []), ("evtchn", []), ("console", []), ("scale", []), ("create", []),
        ]
        if quick {
            arguments = [
                ("ring", ["--mebibytes", "8", "--runs", "1"]), ("xenstore", ["--operations", "500"]),
                ("evtchn", ["--round-trips", "500"]), ("console", ["--mebibytes", "8", "--echoes", "200"]),
                ("scale", ["--consoles", "50", "--idle-seconds", "1"]),
                ("create", ["--rounds", "5", "--parallel", "5"]),
            ]
        }
        var results: [(String, [String: Any])] = []
        for (name, extra) in arguments {
            if !json { FileHandle.standardError.write(Data("running bench \(name)…\n".utf8)) }
            let output = try captureStdout(conch, ["bench", name, "--json"] + extra)
            guard let object = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any] else {
                throw CLIError("bench \(name) printed no JSON object: \(output.prefix(200))")
            }
            results.append((name, object))
        }
        if json {
            let object = Dictionary(uniqueKeysWithValues: results.map { ($0.0, $0.1 as Any) })
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("benchmark  figure                              value")
        for (name, object) in results {
            for key in object.keys.sorted() {
                let value = object[key].map(Self.formatted) ?? ""
                print(
                    name.padding(toLength: 10, withPad: " ", startingAt: 0) + " "
                        + key.padding(toLength: 35, withPad: " ", startingAt: 0) + " " + value
                )
            }
        }
    }

    /// Integers as they are; other numbers with at most two decimals.
    static func formatted(_ value: Any) -> String {
        guard let number = value as? NSNumber, !(value is Bool) else { return "\(value)" }
        let double = number.doubleValue
        if double == double.rounded(), abs(double) < 1e15 { return String(Int64(double)) }
        return String(format: "%.2f", double)
    }

    private func captureStdout(_ executable: String, _ arguments: [String]) throws -> String {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw CLIError("pipe failed: errno \(errno)") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let process = try ChildProcess(
            executable: executable,
            arguments: arguments,
            descriptors: [1: FileDescriptor(rawValue: ends[1])]
        )
        close(ends[1])
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = read(ends[0], &buffer, buffer.count)
            if got <= 0 { break }
            output += buffer.prefix(got)
        }
        close(ends[0])
        let termination = try process.wait()
        guard termination == .exited(0) else {
            throw CLIError("`conch \(arguments.joined(separator: " "))` failed (\(termination))")
        }
        return String(decoding: output, as: UTF8.self)
    }
}

struct ScaleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "One consoled serving many consoles: time until all are connected, idle CPU, RSS.",
        discussion: """
            Starts the host stack in a scratch run directory and builds --consoles domains (each \
            running /bin/sleep, four pages of memory; --concurrency at once), then times until consoled has marked every \
            console page CONNECTED — beside the time the toolstack took to build them, measured in \
            the same run. Then measures consoled's CPU over --idle-seconds with no traffic and its \
            resident memory, beside its memory with no consoles. Example:

              swift run -c release conch bench scale --consoles 1000 --json
            """
    )

    @Flag(help: "Print one JSON object and nothing else on stdout.")
    var json = false

    @Option(help: "Consoles (one domain each).")
    var consoles = 1000

    @Option(help: "Seconds of idle measurement.")
    var idleSeconds: Double = 10

    @Option(help: "Domains built at once.")
    var concurrency = 8

    func validate() throws {
        guard consoles >= 1, idleSeconds > 0, concurrency >= 1 else {
            throw ValidationError("--consoles >= 1, --idle-seconds > 0 and --concurrency >= 1")
        }
    }

    struct Result: Codable {
        var consoles: Int
        var allConnectedS: Double
        var buildS: Double
        var ratio: Double
        var idleCPUPercent: Double
        var consoledRSSMB: Double
        var consoledRSSEmptyMB: Double

        enum CodingKeys: String, CodingKey {
            case consoles
            case allConnectedS = "all_connected_s"
            case buildS = "build_s"
            case ratio
            case idleCPUPercent = "idle_cpu_percent"
            case consoledRSSMB = "consoled_rss_mb"
            case consoledRSSEmptyMB = "consoled_rss_empty_mb"
        }
    }

    func run() async throws {
        if isDebugBuild {
            FileHandle.standardError.write(Data("note: debug build; use `swift run -c release conch bench …`\n".utf8))
        }
        raiseDescriptorLimit()
        let scratch = try RunDirectory.makeTemporary(prefix: "conch-bench")
        defer { try? FileManager.default.removeItem(atPath: scratch.path) }
        let supervisor = HostSupervisor(runDirectory: scratch, logLevel: "warning")
        try supervisor.start(["hypervisor", "xenstored", "consoled"])
        defer { supervisor.stopAll() }
        guard let consoled = PidFile(path: scratch.consoledPidFile).read() else {
            throw CLIError("consoled wrote no pid file")
        }
        let emptyRSS = Self.megabytes(ProcessStatistics.residentBytes(consoled))
        let host = try await HostConnection.open(scratch)
        let builder = host.builder

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
                if !json, pages.count % 200 == 0 { print("built \(pages.count) domains") }
            }
        }
        let buildSeconds = start.duration(to: .now).seconds
        while pages.contains(where: { $0.connection != .connected }) {
            guard start.duration(to: .now) < .seconds(300) else {
                let waiting = pages.filter { $0.connection != .connected }.count
                throw CLIError("\(waiting) of \(consoles) consoles still not connected after 300 s")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        let connectedSeconds = start.duration(to: .now).seconds
        let served = try JSONDecoder().decode(
            ConsoledStats.self,
            from: Data(readAll(fromSocket: scratch.consoledSocket))
        ).consoles.count
        guard served == consoles else { throw CLIError("consoled reports \(served) consoles, expected \(consoles)") }
        if !json { print("all \(consoles) consoles connected after \(rounded(connectedSeconds, places: 2)) s") }

        try await Task.sleep(for: .seconds(1))  // let the burst of setup work settle
        let before = ProcessStatistics.cpuTicks(consoled) ?? 0
        let idleStart = ContinuousClock.now
        try await Task.sleep(for: .milliseconds(Int64(idleSeconds * 1000)))
        let ticks = (ProcessStatistics.cpuTicks(consoled) ?? before) - before
        let idleCPU = Double(ticks) / ProcessStatistics.ticksPerSecond / idleStart.duration(to: .now).seconds * 100
        let rss = Self.megabytes(ProcessStatistics.residentBytes(consoled))
        host.store.close()

        let result = Result(
            consoles: consoles,
            allConnectedS: rounded(connectedSeconds, places: 2),
            buildS: rounded(buildSeconds, places: 2),
            ratio: rounded(connectedSeconds / buildSeconds, places: 2),
            idleCPUPercent: rounded(idleCPU, places: 2),
            consoledRSSMB: rounded(rss, places: 1),
            consoledRSSEmptyMB: rounded(emptyRSS, places: 1)
        )
        if json {
            print(try benchmarkJSON(result))
        } else {
            print(
                "\(consoles) consoles: all connected in \(result.allConnectedS) s = \(result.ratio) × the build "
                    + "time (\(result.buildS) s); consoled idle \(result.idleCPUPercent)% CPU, "
                    + "RSS \(result.consoledRSSMB) MB (\(result.consoledRSSEmptyMB) MB with none)"
            )
        }
    }

    /// Bytes in MB (10^6), 0 when unknown.
    static func megabytes(_ bytes: UInt64?) -> Double { Double(bytes ?? 0) / 1e6 }
}
