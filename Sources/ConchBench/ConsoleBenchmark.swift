//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Hypervisors
import SystemExtras
import SystemPackage
import Toolstack
import ToolstackRuntime
import XenABI
import XenHypervisor
import XenSim
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// Figures from `conch bench console`: each the median and range over the
/// interleaved pairs (``InterleavedPairs``).
public struct ConsoleBenchmarkResult: Sendable, Codable {
    /// Baseline: the raw two-process ring with an eventfd per batch.
    public var ringEventfdMBps: Spread
    public var channelMBps: Spread
    /// channel ÷ ring ceiling, per pair.
    public var ratio: Spread
    /// Baseline: a ping-pong over two plain eventfds between two processes.
    public var rawEventfdRoundTripP50: Spread
    public var echoRoundTripP50: Spread
    public var echoRoundTripP99: Spread
    /// echo p50 ÷ raw eventfd round trip p50, per pair.
    public var echoVersusRawRatio: Spread
    public var pairs: Int
    /// Bytes streamed per pair.
    public var bytes: UInt64
    public var echoesPerPair: Int

    enum CodingKeys: String, CodingKey {
        case ringEventfdMBps = "ring_eventfd_mbps"
        case channelMBps = "channel_mbps"
        case ratio
        case rawEventfdRoundTripP50 = "raw_eventfd_rtt_p50_us"
        case echoRoundTripP50 = "echo_rtt_p50_us"
        case echoRoundTripP99 = "echo_rtt_p99_us"
        case echoVersusRawRatio = "echo_vs_raw_ratio"
        case pairs
        case bytes
        case echoesPerPair = "echoes_per_pair"
    }
}

/// `conch bench console`: a guest streams bytes over a socket channel through the
/// whole stack — guest program → pty → guest kernel → ring → consoled → socket —
/// and a second guest copies its channel back, for 64-byte echoes. Each is
/// measured in `pairs` interleaved pairs with its baseline: the raw two-process
/// ring (eventfd mode) for throughput, a raw eventfd ping-pong for the echo.
public enum ConsoleBenchmark {
    public struct Failed: Error, CustomStringConvertible {
        public let description: String
    }

    /// The stack, its two guests and their connected channel sockets.
    final class Rig {
        let runDirectory: RunDirectory
        var daemons: [ChildProcess] = []
        var sockets: [Int32] = []

        init() throws { runDirectory = try RunDirectory.makeTemporary(prefix: "conch-bench") }

        deinit {
            for socket in sockets { close(socket) }
            for daemon in daemons.reversed() {
                daemon.kill(SIGTERM)
                _ = try? daemon.wait()
            }
            try? FileManager.default.removeItem(atPath: runDirectory.path)
        }
    }

    public static func run(
        conchExecutable: String,
        mebibytes: Int = 64,
        echoes: Int = 2000,
        pairs: Int = 7,
        progress: (String) -> Void = { _ in }
    ) async throws -> ConsoleBenchmarkResult {
        let rig = try Rig()
        // Its deinit stops the stack: not before the last pair.
        defer { withExtendedLifetime(rig) {} }
        let runDirectory = rig.runDirectory
        for (name, ready) in [
            ("hypervisor", runDirectory.hypervisorSocket), ("xenstored", runDirectory.xenstoredSocket),
            ("consoled", runDirectory.consoledSocket),
        ] {
            rig.daemons.append(
                try ChildProcess(
                    executable: conchExecutable,
                    arguments: [name, "--run-dir", runDirectory.path, "--log-level", "warning"]
                )
            )
            try await EvtchnBenchmark.waitFor(ready)
        }
        let hypervisor = try HypervisorFactory.privileged(.simulated(runDirectory))
        let store = try await XenstoreClient.connect(socketPath: runDirectory.xenstoredSocket)
        defer { store.close() }
        let builder = DomainBuilder(hypervisor: hypervisor, store: store)

        // The streamer writes `mebibytes` MiB into its channel each time a line arrives
        // on it; the echo guest copies its channel back to itself.
        let total = mebibytes << 20
        for (name, script) in [
            ("streamer", streamerScript(bytes: total)),
            ("echo", "d=\(channelDevice); exec cat < \"$d\" > \"$d\""),
        ] {
            let socketPath = runDirectory.path + "/\(name).sock"
            let built = try await builder.build(
                try configuration(name: name, socket: socketPath, script: script),
                guestKernel: [conchExecutable, "guest-kernel"]
            )
            try hypervisor.unpause(built.domain.domid)
            rig.sockets.append(try await connect(socketPath))
        }
        let (stream, echo) = (rig.sockets[0], rig.sockets[1])

        var throughput = InterleavedPairs()
        var echoP50 = InterleavedPairs()
        var echoP99: [Double] = []
        for pair in 1...pairs {
            let ceiling = try RingBenchmark.measure(
                mode: .produceEventfd,
                totalBytes: UInt64(total),
                peerExecutable: conchExecutable,
                peerArguments: ["ring-peer"]
            )
            let channel = try streamOnce(stream, bytes: total)
            throughput.record(baseline: ceiling, subject: channel)

            let raw = try EvtchnBenchmark.rawRoundTrip(conchExecutable: conchExecutable, roundTrips: echoes)
            let round = try echoRoundTrips(echo, count: echoes)
            echoP50.record(baseline: raw.p50, subject: round.p50)
            echoP99.append(round.p99)
            progress(
                "pair \(pair)/\(pairs): ring ceiling \(Int(ceiling)) MB/s, channel \(Int(channel)) MB/s; "
                    + "raw eventfd round trip \(rounded(raw.p50)) µs, echo 64 B p50 \(rounded(round.p50)) µs "
                    + "p99 \(rounded(round.p99)) µs"
            )
        }
        return ConsoleBenchmarkResult(
            ringEventfdMBps: throughput.baseline(),
            channelMBps: throughput.subject(),
            ratio: throughput.ratio(),
            rawEventfdRoundTripP50: echoP50.baseline(),
            echoRoundTripP50: echoP50.subject(),
            echoRoundTripP99: Spread(echoP99),
            echoVersusRawRatio: echoP50.ratio(),
            pairs: pairs,
            bytes: UInt64(total),
            echoesPerPair: echoes
        )
    }

    /// The guest's side of the bench channel.
    static let channelDevice = "\"$CONCH_GUEST_DEV/xen-channel/org.conch.bench.0\""

    /// A guest that writes `bytes` bytes into its channel each time a line arrives on it.
    static func streamerScript(bytes: Int) -> String {
        "d=\(channelDevice); while read -r _ < \"$d\"; do head -c \(bytes) /dev/zero > \"$d\"; done"
    }

    /// Asks the streamer for `bytes` bytes and reads them; MB/s from the first byte.
    static func streamOnce(_ stream: Int32, bytes total: Int) throws -> Double {
        let go: [UInt8] = Array("go\n".utf8)
        guard go.withUnsafeBytes({ write(stream, $0.baseAddress, $0.count) }) == go.count else {
            throw Failed(description: "could not ask the streamer for bytes: errno \(errno)")
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var received = 0
        var started: ContinuousClock.Instant?
        while received < total {
            let got = read(stream, &buffer, Swift.min(buffer.count, total - received))
            guard got > 0 else { throw Failed(description: "the channel closed after \(received) bytes") }
            if started == nil { started = .now }
            received += got
        }
        return Double(total) / (ContinuousClock.now - started!).seconds / 1e6
    }

    /// 64-byte messages through the echo guest, one at a time; the first tenth warms up.
    static func echoRoundTrips(_ echo: Int32, count: Int) throws -> LatencySamples {
        let message = [UInt8](repeating: UInt8(ascii: "e"), count: 64)
        var buffer = [UInt8](repeating: 0, count: message.count)
        var samples = LatencySamples()
        let clock = ContinuousClock()
        for index in 0..<(count + count / 10) {
            let start = clock.now
            _ = message.withUnsafeBytes { write(echo, $0.baseAddress, $0.count) }
            var back = 0
            while back < message.count {
                let got = read(echo, &buffer, message.count - back)
                guard got > 0 else { throw Failed(description: "the echo channel closed") }
                back += got
            }
            if index >= count / 10 { samples.record(clock.now - start) }
        }
        return samples
    }

    static func configuration(name: String, socket: String, script: String) throws -> DomainConfiguration {
        var configuration = try DomainConfiguration.parse(
            """
            name = "\(name)"
            kernel = "/bin/sh"
            channel = [ "name=org.conch.bench.0, connection=socket, path=\(socket)" ]
            """,
            fileName: "\(name).cfg"
        ).configuration
        configuration.arguments = ["-c", script]
        return configuration
    }

    /// Connects to a channel's socket once consoled has published it.
    static func connect(_ path: String) async throws -> Int32 {
        for _ in 0..<3000 {
            if let fd = try? UnixSocketPath.connect(path) { return fd }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw Failed(description: "\(path) never accepted a connection")
    }
}
