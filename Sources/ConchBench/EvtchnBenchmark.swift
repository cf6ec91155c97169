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
import XenABI
import XenHypervisor
import XenSim
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// Figures from `conch bench evtchn`; the round trips are medians and ranges
/// over interleaved pairs (``InterleavedPairs``).
public struct EvtchnBenchmarkResult: Sendable, Codable {
    public var notifyRoundTripP50: Spread
    public var notifyRoundTripP99: Spread
    public var notifiesPerSecond: Spread
    /// Baseline: the same ping-pong over two plain eventfds handed over directly.
    public var rawEventfdRoundTripP50: Spread
    public var notifyVersusRawRatio: Spread
    public var xenstoreRingReadP50: Double
    public var xenstoreSocketReadP50: Double
    public var roundTrips: Int
    public var pairs: Int

    enum CodingKeys: String, CodingKey {
        case notifyRoundTripP50 = "notify_rtt_p50_us"
        case notifyRoundTripP99 = "notify_rtt_p99_us"
        case notifiesPerSecond = "notifies_per_s"
        case rawEventfdRoundTripP50 = "raw_eventfd_rtt_p50_us"
        case notifyVersusRawRatio = "notify_rtt_vs_raw_ratio"
        case xenstoreRingReadP50 = "xs_ring_read_p50_us"
        case xenstoreSocketReadP50 = "xs_socket_read_p50_us"
        case roundTrips = "round_trips"
        case pairs
    }
}

/// `conch bench evtchn`: event-channel notify→wake round trips between two
/// processes through ports bound by the simulated hypervisor, beside plain
/// eventfds (interleaved pairs, both on two different CPUs), and a xenstore read
/// over a guest ring beside one over the socket.
public enum EvtchnBenchmark {
    public struct Failed: Error, CustomStringConvertible {
        public let description: String
    }

    public static func run(
        conchExecutable: String,
        roundTrips: Int = 20_000,
        pairs: Int = 7,
        progress: (String) -> Void = { _ in }
    ) async throws -> EvtchnBenchmarkResult {
        let runDirectory = try RunDirectory.makeTemporary(prefix: "conch-bench")
        let hypervisorProcess = try ChildProcess(
            executable: conchExecutable,
            arguments: ["hypervisor", "--run-dir", runDirectory.path, "--log-level", "warning"]
        )
        defer {
            hypervisorProcess.kill(SIGTERM)
            _ = try? hypervisorProcess.wait()
            try? FileManager.default.removeItem(atPath: runDirectory.path)
        }
        try await waitFor(runDirectory.hypervisorSocket)
        let xenstored = try ChildProcess(
            executable: conchExecutable,
            arguments: ["xenstored", "--run-dir", runDirectory.path, "--log-level", "warning"]
        )
        defer {
            xenstored.kill(SIGTERM)
            _ = try? xenstored.wait()
        }
        try await waitFor(runDirectory.xenstoredSocket)
        let hypervisor = try SimHypervisorClient.connect(runDirectory: runDirectory)
        let clock = ContinuousClock()

        // 1 and 2, interleaved: plain eventfds (the baseline), then notify round trips
        // through hypervisor-bound ports and a one-way burst.
        var roundTripPairs = InterleavedPairs()
        var notifyP99: [Double] = []
        var rates: [Double] = []
        for pair in 1...pairs {
            let raw = try rawRoundTrip(conchExecutable: conchExecutable, roundTrips: roundTrips)
            let mine = try hypervisor.allocateUnbound(remote: .dom0)
            let placement = BaselinePlacement.crossCore()
            let peer = try placement.spawningPeer {
                try ChildProcess(
                    executable: conchExecutable,
                    arguments: ["bench-peer", "evtchn", runDirectory.path, "\(mine.port.rawValue)", "\(roundTrips)"]
                )
            }
            let (samples, rate) = try placement.measuring {
                var samples = LatencySamples()
                // The peer signals once when bound.
                guard try mine.wait(timeoutMilliseconds: 30_000) else {
                    throw Failed(description: "evtchn peer never bound")
                }
                for index in 0..<roundTrips {
                    let start = clock.now
                    try mine.notify()
                    guard try mine.wait(timeoutMilliseconds: 30_000) else { throw Failed(description: "lost wake-up") }
                    if index >= roundTrips / 10 { samples.record(clock.now - start) }
                }
                // One way: the peer counts wake-ups while we notify as fast as we can.
                let oneWay = roundTrips * 10
                let started = clock.now
                for _ in 0..<oneWay { try mine.notify() }
                return (samples, Double(oneWay) / (clock.now - started).seconds)
            }
            guard try peer.wait() == .exited(0) else { throw Failed(description: "evtchn peer failed") }
            roundTripPairs.record(baseline: raw.p50, subject: samples.p50)
            notifyP99.append(samples.p99)
            rates.append(rate)
            progress(
                "pair \(pair)/\(pairs): raw eventfd round trip p50 \(rounded(raw.p50)) µs; evtchn notify→wake "
                    + "p50 \(rounded(samples.p50)) µs, p99 \(rounded(samples.p99)) µs; \(Int(rate)) notifies/s one way"
            )
        }

        // 3. xenstore read: a guest over its ring vs this process over the socket.
        let store = try await XenstoreClient.connect(socketPath: runDirectory.xenstoredSocket)
        defer { store.close() }
        let domain = try hypervisor.createDomain(
            DomainSpec(
                name: "xs-bench",
                uuid: "00000000-0000-4000-8000-000000000001",
                program: conchExecutable,
                arguments: ["bench-peer", "xenstore-ring", "\(roundTrips)"],
                onPoweroff: .preserve
            )
        )
        let home = "/local/domain/\(domain.domid.rawValue)"
        try await store.write(home + "/bench", "value")
        try await store.setPermissions(home, .init(owner: domain.domid))
        try await store.setPermissions(home + "/bench", .init(owner: domain.domid))
        try await store.introduce(
            domain.domid,
            frame: domain.start.xenstoreFrame.rawValue,
            port: domain.start.xenstorePort
        )
        try hypervisor.unpause(domain.domid)
        var ringP50: Double?
        for _ in 0..<6000 {
            // ENOENT until the guest has written its figure.
            if let value = (try? await store.read(home + "/result"))?.nilIfEmpty {
                ringP50 = Double(String(decoding: value, as: UTF8.self))
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        guard let ringP50 else { throw Failed(description: "the xenstore-ring guest reported nothing") }
        progress("xenstore read over a guest ring: p50 \(rounded(ringP50)) µs")

        var socketSamples = LatencySamples()
        try await withTaskExecutorPreference(store.preferredExecutor) {
            for index in 0..<roundTrips {
                let start = clock.now
                _ = try await store.read(home + "/bench")
                if index >= roundTrips / 10 { socketSamples.record(clock.now - start) }
            }
        }
        progress("xenstore read over the Unix socket: p50 \(rounded(socketSamples.p50)) µs")

        return EvtchnBenchmarkResult(
            notifyRoundTripP50: roundTripPairs.subject(),
            notifyRoundTripP99: Spread(notifyP99),
            notifiesPerSecond: Spread(rates, places: 0),
            rawEventfdRoundTripP50: roundTripPairs.baseline(),
            notifyVersusRawRatio: roundTripPairs.ratio(),
            xenstoreRingReadP50: rounded(ringP50),
            xenstoreSocketReadP50: rounded(socketSamples.p50),
            roundTrips: roundTrips,
            pairs: pairs
        )
    }

    static func waitFor(_ path: String) async throws {
        for _ in 0..<1000 {
            if access(path, F_OK) == 0 { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw Failed(description: "\(path) never appeared")
    }

    /// Ping-pong over two eventfds shared with a child by SCM_RIGHTS, the two
    /// processes on different CPUs (``BaselinePlacement``).
    static func rawRoundTrip(conchExecutable: String, roundTrips: Int) throws -> LatencySamples {
        let toPeer = try EventNotifier()
        let fromPeer = try EventNotifier()
        let (parent, child) = try UnixSocket.pair()
        let placement = BaselinePlacement.crossCore()
        let process = try placement.spawningPeer {
            try ChildProcess(
                executable: conchExecutable,
                arguments: ["bench-peer", "raw-eventfd", "\(roundTrips)"],
                descriptors: [3: child.fileDescriptor]
            )
        }
        try parent.send([1], descriptors: [toPeer.fileDescriptor, fromPeer.fileDescriptor])
        let samples = try placement.measuring {
            var samples = LatencySamples()
            let clock = ContinuousClock()
            for index in 0..<roundTrips {
                let start = clock.now
                try toPeer.signal()
                try fromPeer.wait()
                if index >= roundTrips / 10 { samples.record(clock.now - start) }
            }
            return samples
        }
        guard try process.wait() == .exited(0) else { throw Failed(description: "raw eventfd peer failed") }
        return samples
    }
}

/// The processes the benchmark starts (`conch bench-peer …`).
public enum EvtchnBenchmarkPeer {
    /// Binds the parent's port, signals once, then answers every wake-up.
    public static func evtchn(runDirectory: String, port: UInt32, roundTrips: Int) throws {
        let hypervisor = try SimHypervisorClient.connect(runDirectory: RunDirectory(path: runDirectory))
        let channel = try hypervisor.bindInterdomain(remote: .dom0, remotePort: EvtchnPort(port))
        try channel.notify()
        for _ in 0..<roundTrips {
            guard try channel.wait(timeoutMilliseconds: 30_000) else {
                throw EvtchnBenchmark.Failed(description: "no ping")
            }
            try channel.notify()
        }
        // Drain the one-way burst until it stops.
        while try channel.wait(timeoutMilliseconds: 200) {}
    }

    public static func rawEventfd(roundTrips: Int) throws {
        let socket = UnixSocket(adopting: FileDescriptor(rawValue: 3))
        let (_, descriptors) = try socket.receiveExactly(1, maxDescriptors: 2)
        guard descriptors.count == 2 else { throw EvtchnBenchmark.Failed(description: "no eventfds") }
        let fromParent = EventNotifier(adopting: descriptors[0])
        let toParent = EventNotifier(adopting: descriptors[1])
        for _ in 0..<roundTrips {
            try fromParent.wait()
            try toParent.signal()
        }
    }

    /// Runs as a guest: reads over its xenstore ring and writes the p50 (µs) into
    /// `<home>/result` for the benchmark to collect.
    public static func xenstoreRing(roundTrips: Int) async throws {
        let hypervisor = try HypervisorFactory.guest()
        let client = try await XenstoreClient.connectRing(hypervisor: hypervisor)
        var samples = LatencySamples()
        let clock = ContinuousClock()
        for index in 0..<roundTrips {
            let start = clock.now
            _ = try await client.read("bench")
            if index >= roundTrips / 10 { samples.record(clock.now - start) }
        }
        try await client.write("result", String(samples.p50))
        // Stay until destroyed, so the result node survives for the reader.
        while true { try await Task.sleep(for: .seconds(60)) }
    }
}

extension Array where Element == UInt8 {
    fileprivate var nilIfEmpty: [UInt8]? { isEmpty ? nil : self }
}
