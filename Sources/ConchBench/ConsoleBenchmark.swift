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

/// Figures from `conch bench console`.
public struct ConsoleBenchmarkResult: Sendable, Codable {
    public var channelMBps: Double
    public var ringEventfdMBps: Double
    public var ratio: Double
    public var echoRoundTripP50: Double
    public var echoRoundTripP99: Double
    public var bytes: UInt64

    enum CodingKeys: String, CodingKey {
        case channelMBps = "channel_mbps"
        case ringEventfdMBps = "ring_eventfd_mbps"
        case ratio
        case echoRoundTripP50 = "echo_rtt_p50_us"
        case echoRoundTripP99 = "echo_rtt_p99_us"
        case bytes
    }
}

/// `conch bench console`: a guest streams bytes over a socket channel through the
/// whole stack — guest program → pty → guest kernel → ring → consoled → socket —
/// beside the raw two-process ring ceiling (eventfd mode) measured in the same run;
/// then 64-byte echoes through a guest that copies the channel back to itself.
public enum ConsoleBenchmark {
    public struct Failed: Error, CustomStringConvertible {
        public let description: String
    }

    public static func run(
        conchExecutable: String,
        mebibytes: Int = 64,
        echoes: Int = 2000,
        progress: (String) -> Void = { _ in }
    ) async throws -> ConsoleBenchmarkResult {
        let ceiling = try RingBenchmark.measure(
            mode: .produceEventfd,
            totalBytes: UInt64(mebibytes) << 20,
            peerExecutable: conchExecutable,
            peerArguments: ["ring-peer"]
        )
        progress("ring ceiling (eventfd): \(Int(ceiling)) MB/s")

        let runDirectory = try RunDirectory.makeTemporary(prefix: "conch-bench")
        var daemons: [ChildProcess] = []
        defer {
            for daemon in daemons.reversed() {
                daemon.kill(SIGTERM)
                _ = try? daemon.wait()
            }
            try? FileManager.default.removeItem(atPath: runDirectory.path)
        }
        for (name, ready) in [
            ("hypervisor", runDirectory.hypervisorSocket), ("xenstored", runDirectory.xenstoredSocket),
            ("consoled", runDirectory.consoledSocket),
        ] {
            daemons.append(
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

        // Throughput: the guest writes `mebibytes` MiB into its channel device.
        let total = mebibytes << 20
        let streamSocket = runDirectory.path + "/stream.sock"
        let streamer = try await builder.build(
            try configuration(
                name: "streamer",
                socket: streamSocket,
                script: "exec head -c \(total) /dev/zero > \"$CONCH_GUEST_DEV/xen-channel/org.conch.bench.0\"; sleep 60"
            ),
            guestKernel: [conchExecutable, "guest-kernel"]
        )
        try hypervisor.unpause(streamer.domain.domid)
        let stream = try await connect(streamSocket)
        defer { close(stream) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var received = 0
        var started: ContinuousClock.Instant?
        while received < total {
            let got = read(stream, &buffer, buffer.count)
            guard got > 0 else { throw Failed(description: "the channel closed after \(received) bytes") }
            if started == nil { started = .now }
            received += got
        }
        let seconds = (ContinuousClock.now - started!).seconds
        let channelMBps = Double(total) / seconds / 1e6
        progress("channel: \(Int(channelMBps)) MB/s (\(mebibytes) MiB)")

        // Echo: the guest copies its channel back to itself.
        let echoSocket = runDirectory.path + "/echo.sock"
        let echo = try await builder.build(
            try configuration(
                name: "echo",
                socket: echoSocket,
                script: "d=\"$CONCH_GUEST_DEV/xen-channel/org.conch.bench.0\"; exec cat < \"$d\" > \"$d\""
            ),
            guestKernel: [conchExecutable, "guest-kernel"]
        )
        try hypervisor.unpause(echo.domain.domid)
        let echoFD = try await connect(echoSocket)
        defer { close(echoFD) }
        let message = [UInt8](repeating: UInt8(ascii: "e"), count: 64)
        var samples = LatencySamples()
        let clock = ContinuousClock()
        for index in 0..<(echoes + echoes / 10) {
            let start = clock.now
            _ = message.withUnsafeBytes { write(echoFD, $0.baseAddress, $0.count) }
            var back = 0
            while back < message.count {
                let got = read(echoFD, &buffer, message.count - back)
                guard got > 0 else { throw Failed(description: "the echo channel closed") }
                back += got
            }
            if index >= echoes / 10 { samples.record(clock.now - start) }
        }
        progress("echo 64 B: p50 \(rounded(samples.p50)) µs, p99 \(rounded(samples.p99)) µs")
        return ConsoleBenchmarkResult(
            channelMBps: rounded(channelMBps),
            ringEventfdMBps: rounded(ceiling),
            ratio: rounded(channelMBps / max(ceiling, 0.001), places: 2),
            echoRoundTripP50: rounded(samples.p50),
            echoRoundTripP99: rounded(samples.p99),
            bytes: UInt64(total)
        )
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
