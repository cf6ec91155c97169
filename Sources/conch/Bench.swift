//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import ConchBench
import Foundation
import SystemExtras

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Conch's throughput and latency.",
        subcommands: [
            RingBench.self, XenstoreBench.self, EvtchnBench.self, ConsoleBench.self, ScaleBench.self, CreateBench.self,
            AllBench.self,
        ]
    )
}

struct RingBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring",
        abstract: "Raw console-ring throughput between two processes: the ceiling other figures compare to.",
        discussion: """
            A second process writes 2 KiB chunks into the `out` ring of a console page shared \
            through a memfd; this process reads and checks every byte. Modes: busy polling, \
            one eventfd notification per batch, and spin-then-block. The two processes run on two \
            different CPUs (left to the scheduler, they share one in some runs and not in others, \
            and the figures flip between two modes); each run measures the three modes in turn, \
            and each figure is reported as its median and range over the runs. Example:

              conch bench ring --json
            """
    )

    @Flag(help: "Print one JSON object (keys busy_mbps, eventfd_mbps, hybrid_mbps, …) and nothing else on stdout.")
    var json = false

    @Option(help: "Bytes moved per run, in MiB.")
    var mebibytes: UInt64 = 256

    @Option(help: "Runs, each of every mode; the median and range are reported.")
    var runs: Int = 3

    func validate() throws {
        guard mebibytes > 0, runs > 0 else { throw ValidationError("--mebibytes and --runs must be positive") }
    }

    func run() throws {
        let result = try RingBenchmark.run(
            totalBytes: mebibytes << 20,
            runs: runs,
            peerExecutable: ChildProcess.currentExecutable(),
            peerArguments: [RingPeerCommand.configuration.commandName!],
            progress: { line in if !json { print(line) } }
        )
        if json {
            print(try benchmarkJSON(result))
        } else {
            print("ring ceiling (2 KiB writes, \(mebibytes) MiB × \(runs) runs, median (min–max)):")
            print("  busy polling      \(result.busyMBps.text) MB/s")
            print("  eventfd per batch \(result.eventfdMBps.text) MB/s  (\(result.eventfdVersusBusy.text) of busy)")
            print("  spin-then-block   \(result.hybridMBps.text) MB/s  (\(result.hybridVersusBusy.text) of busy)")
        }
    }
}

/// The peer side of the ring benchmark and tests: started by Conch itself with a
/// control socket at fd 3. Not for people to run.
struct RingPeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring-peer",
        abstract: "Internal: the guest end of a ring benchmark (expects a control socket at fd 3).",
        shouldDisplay: false
    )

    func run() throws {
        let code = try RingPeer.serve(socket: UnixSocket(adopting: .init(rawValue: 3)))
        if code != 0 { throw ExitCode(code) }
    }
}

struct XenstoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xenstore",
        abstract: "xenstored latency and throughput over its Unix socket, against a freshly started daemon.",
        discussion: """
            Measures read, write, directory, an empty transaction and a read-modify-write \
            transaction through the async client (ops/s, p50 and p99 µs), 16 concurrent clients, \
            and, as the baseline, a blocking raw-socket read in --pairs pairs interleaved with the \
            client's read (medians and ranges). Build with -c release. Example:

              swift run -c release conch bench xenstore --json

            With --against PATH, runs one mix of reads, writes, directory listings, empty \
            and read-modify-write transactions against a fresh conch xenstored and against the \
            daemon listening on PATH (cxenstored's /run/xenstored/socket on a Xen host, say), \
            in --pairs interleaved pairs, and reports each operation's p50 on both and their \
            ratio (conch ÷ other; below 1, conch is faster). --scale adds, in the same pairs: \
            16 and 64 connections at once cycling read, write, directory and a read-modify-write \
            transaction; 20 writes under a subtree with --watchers watches on it (events/s); \
            --nodes children of one node created (pipelined), listed and removed; and writes \
            per second beside --idle-connections connections that hold nothing (and one watch \
            elsewhere). It writes only under /local/domain/0/conch-bench-*<pid>, and removes that.
            """
    )

    @Flag(help: "Print one JSON object and nothing else on stdout.")
    var json = false

    @Option(help: "Operations per measurement.")
    var operations = 20_000

    @Option(help: "Interleaved baseline/subject pairs.")
    var pairs = 7

    @Option(help: "Compare with the xenstored listening on this socket instead.")
    var against: String?

    @Flag(help: "With --against: also 16 and 64 clients at once, --watchers watches on one subtree, --nodes nodes.")
    var scale = false

    @Option(help: "With --scale: watches on one subtree.")
    var watchers = 1000

    @Option(help: "With --scale: nodes created, listed and removed.")
    var nodes = 100_000

    @Option(help: "With --scale: connections open beside the writes, holding nothing.")
    var idleConnections = 1000

    func validate() throws {
        guard operations >= 100, pairs >= 1 else {
            throw ValidationError("--operations must be at least 100 and --pairs at least 1")
        }
        guard (0...100_000).contains(idleConnections) else {
            throw ValidationError("--idle-connections must be between 0 and 100000")
        }
    }

    func run() async throws {
        if isDebugBuild {
            FileHandle.standardError.write(Data("note: debug build; use `swift run -c release conch bench …`\n".utf8))
        }
        if let against {
            let result = try await XenstoreBenchmark.compare(
                conchExecutable: ChildProcess.currentExecutable(),
                against: against,
                operations: operations,
                pairs: pairs,
                scale: scale
                    ? .init(
                        operationsPerClient: operations,
                        watchers: watchers,
                        watchedWrites: 20,
                        nodes: nodes,
                        idleConnections: idleConnections
                    )
                    : nil,
                progress: { line in if !json { print(line) } }
            )
            guard !json else { return print(try benchmarkJSON(result)) }
            print("p50 µs, median (min–max) of \(result.pairs) pairs; ratio = conch ÷ \(against)")
            for name in XenstoreBenchmark.Operation.allCases.map(\.rawValue) {
                guard let figure = result.operations[name] else { continue }
                print(
                    name.padding(toLength: 10, withPad: " ", startingAt: 0)
                        + " conch \(figure.conchP50.text)  other \(figure.otherP50.text)  ratio \(figure.ratio.text)"
                )
            }
            print("whole mix: conch ÷ other = \(result.mixRatio.text)")
            for (key, figure) in (result.scale ?? [:]).sorted(by: { $0.key < $1.key }) {
                print(
                    key.padding(toLength: 25, withPad: " ", startingAt: 0)
                        + " conch \(figure.conch.text)  other \(figure.other.text)  conch ÷ other \(figure.ratio.text)"
                )
            }
            return
        }
        let result = try await XenstoreBenchmark.run(
            conchExecutable: ChildProcess.currentExecutable(),
            operations: operations,
            pairs: pairs,
            progress: { line in if !json { print(line) } }
        )
        if json {
            print(try benchmarkJSON(result))
        } else {
            print(
                "read p50 \(result.pairedReadP50.text) µs = \(result.readP50VersusRaw.text) × the raw blocking-socket "
                    + "read (\(result.rawReadP50.text) µs); median (min–max) of \(result.pairs) pairs"
            )
        }
    }
}

struct EvtchnBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evtchn",
        abstract: "Event-channel notify→wake round trips and xenstore reads over a guest ring vs the socket.",
        discussion: """
            Starts a hypervisor and xenstored in a scratch run directory. Reports the notify→wake \
            round trip between two processes through hypervisor-bound ports (p50, p99 µs) beside \
            the same ping-pong over plain eventfds — --pairs interleaved pairs, each pair's two \
            processes on two different CPUs; medians and ranges — notifications per second one \
            way, and a xenstore read from a guest over its ring beside one over the Unix socket. \
            Example:

              swift run -c release conch bench evtchn --json
            """
    )

    @Flag(help: "Print one JSON object and nothing else on stdout.")
    var json = false

    @Option(help: "Round trips per measurement.")
    var roundTrips = 20_000

    @Option(help: "Interleaved baseline/subject pairs.")
    var pairs = 7

    func validate() throws {
        guard roundTrips >= 100, pairs >= 1 else {
            throw ValidationError("--round-trips must be at least 100 and --pairs at least 1")
        }
    }

    func run() async throws {
        if isDebugBuild {
            FileHandle.standardError.write(Data("note: debug build; use `swift run -c release conch bench …`\n".utf8))
        }
        let result = try await EvtchnBenchmark.run(
            conchExecutable: ChildProcess.currentExecutable(),
            roundTrips: roundTrips,
            pairs: pairs,
            progress: { line in if !json { print(line) } }
        )
        if json {
            print(try benchmarkJSON(result))
        } else {
            print(
                "notify round trip p50 \(result.notifyRoundTripP50.text) µs = \(result.notifyVersusRawRatio.text) × "
                    + "the raw eventfd round trip (\(result.rawEventfdRoundTripP50.text) µs); median (min–max) of "
                    + "\(result.pairs) pairs"
            )
        }
    }
}

/// The other processes of the benchmarks. Not for people to run.
struct BenchPeer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-peer",
        abstract: "Internal: the peer processes benchmarks start.",
        shouldDisplay: false
    )

    @Argument var role: String
    @Argument var arguments: [String] = []

    func run() async throws {
        switch role {
        case "evtchn":
            guard arguments.count == 3, let port = UInt32(arguments[1]), let count = Int(arguments[2]) else {
                throw ValidationError("usage: bench-peer evtchn RUN_DIR PORT COUNT")
            }
            try EvtchnBenchmarkPeer.evtchn(runDirectory: arguments[0], port: port, roundTrips: count)
        case "raw-eventfd":
            try EvtchnBenchmarkPeer.rawEventfd(roundTrips: Int(arguments.first ?? "") ?? 0)
        case "xenstore-ring":
            try await EvtchnBenchmarkPeer.xenstoreRing(roundTrips: Int(arguments.first ?? "") ?? 0)
        default:
            throw ValidationError("unknown bench peer role \(role)")
        }
    }
}

struct ConsoleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Guest→socket channel throughput beside the raw ring ceiling, and a 64-byte echo round trip.",
        discussion: """
            Starts a hypervisor, xenstored and consoled in a scratch run directory, a guest that \
            streams into a socket channel through the whole stack and a guest that echoes its \
            channel. Measures --pairs interleaved pairs: the two-process ring ceiling (eventfd \
            mode), then the channel's MB/s; a raw eventfd ping-pong, then 64-byte echo round \
            trips. Reports each figure's median and range over the pairs, and the median of the \
            pairwise ratios. Example:

              swift run -c release conch bench console --json
            """
    )

    @Flag(help: "Print one JSON object and nothing else on stdout.")
    var json = false

    @Option(help: "MiB the guest streams per pair.")
    var mebibytes = 64

    @Option(help: "Echo round trips per pair.")
    var echoes = 2000

    @Option(help: "Interleaved baseline/subject pairs.")
    var pairs = 7

    func validate() throws {
        guard mebibytes > 0, echoes >= 10, pairs >= 1 else {
            throw ValidationError("--mebibytes > 0, --echoes >= 10 and --pairs >= 1")
        }
    }

    func run() async throws {
        if isDebugBuild {
            FileHandle.standardError.write(Data("note: debug build; use `swift run -c release conch bench …`\n".utf8))
        }
        let result = try await ConsoleBenchmark.run(
            conchExecutable: ChildProcess.currentExecutable(),
            mebibytes: mebibytes,
            echoes: echoes,
            pairs: pairs,
            progress: { line in if !json { print(line) } }
        )
        if json {
            print(try benchmarkJSON(result))
        } else {
            print("median (min–max) over \(result.pairs) pairs:")
            print(
                "channel \(result.channelMBps.text) MB/s = \(result.ratio.text) × the ring ceiling "
                    + "(\(result.ringEventfdMBps.text) MB/s)"
            )
            print(
                "echo 64 B p50 \(result.echoRoundTripP50.text) µs = \(result.echoVersusRawRatio.text) × the raw "
                    + "eventfd round trip (\(result.rawEventfdRoundTripP50.text) µs); p99 \(result.echoRoundTripP99.text) µs"
            )
        }
    }
}
