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
            baseline, measured just before in the same round, spawns the guest's program directly \
            and times its first byte on a pipe. Reports medians and ranges over the rounds. Then creates --parallel guests at once and times until all run. \
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

    func run() async throws {
        if isDebugBuild {
            FileHandle.standardError.write(Data("note: debug build; use `swift run -c release conch bench …`\n".utf8))
        }
        let result = try await CreateBenchmark.run(
            conchExecutable: ChildProcess.currentExecutable(),
            rounds: rounds,
            parallel: parallel,
            progress: { if !json { print($0) } }
        )
        if json {
            print(try benchmarkJSON(result))
        } else {
            print(
                "create -c → first console byte: \(result.createToFirstByteMs.text) ms (p99 "
                    + "\(result.createToFirstByteP99Ms) ms) = \(result.ratio.text) × spawning the program bare "
                    + "(\(result.spawnToFirstByteMs.text) ms); median (min–max) of \(result.rounds) rounds"
            )
            print("\(parallel) creates in parallel: \(result.create100S) s")
        }
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
        let results = try AllBenchmarks.run(conch: ChildProcess.currentExecutable(), quick: quick) { line in
            if !json { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
        }
        print(json ? try AllBenchmarks.json(results) : AllBenchmarks.table(results))
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
            resident memory, beside its memory with no consoles. One more guest streams 16 MiB \
            through a socket channel three times before the others exist and three times among \
            them: its median throughput among them beside alone. Each console 0 holds a host pty, \
            so --consoles needs that many under kernel.pty.max; and every process needs \
            descriptors for each console (raised to the hard limit, or to fs.nr_open when \
            privileged). Example:

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

    func run() async throws {
        if isDebugBuild {
            FileHandle.standardError.write(Data("note: debug build; use `swift run -c release conch bench …`\n".utf8))
        }
        let result = try await ScaleBenchmark.run(
            conchExecutable: ChildProcess.currentExecutable(),
            consoles: consoles,
            idleSeconds: idleSeconds,
            concurrency: concurrency,
            progress: { if !json { print($0) } }
        )
        if json {
            print(try benchmarkJSON(result))
        } else {
            print(
                "\(consoles) consoles: all connected in \(result.allConnectedS) s = \(result.ratio) × the build "
                    + "time (\(result.buildS) s); consoled idle \(result.idleCPUPercent)% CPU, "
                    + "RSS \(result.consoledRSSMB) MB (\(result.consoledRSSEmptyMB) MB with none)"
            )
            print(
                "one busy console among them: \(result.busyAmongMBps) MB/s = \(result.busyRatio) × its throughput "
                    + "alone (\(result.busyAloneMBps) MB/s)"
            )
        }
    }
}
