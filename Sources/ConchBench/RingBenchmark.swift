//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemExtras
import SystemPackage
import XenABI
import XenMemory
import XenRing

#if canImport(Glibc)
import Glibc
#endif

/// A running ring peer: a second process holding the guest end of a console ring
/// in a shared memfd page, with one eventfd per direction. The parent holds the
/// backend end. Used by `conch bench ring` and by the cross-process tests.
public final class RingPeerSession {
    public let memoryFile: SharedMemoryFile
    public let ring: ConsoleRing<MappedMemory>
    public let control: MappedMemory
    let notifiers: Notifiers
    let socket: UnixSocket
    let child: ChildProcess

    /// Starts `executable arguments…` with its end of a socketpair at fd 3, then
    /// sends it the request and the descriptors over SCM_RIGHTS.
    public init(executable: String, arguments: [String], request: RingPeerRequest) throws {
        memoryFile = try SharedMemoryFile(pageCount: 2, name: "conch-ring-peer")
        ring = ConsoleRing(memory: try memoryFile.map(pageOffset: 0))
        control = try memoryFile.map(pageOffset: 1)
        notifiers = Notifiers(toBackend: try EventNotifier(), toFrontend: try EventNotifier())
        let (parentEnd, childEnd) = try UnixSocket.pair()
        socket = parentEnd
        child = try ChildProcess(
            executable: executable,
            arguments: arguments,
            descriptors: [3: childEnd.fileDescriptor]
        )
        try socket.send(
            request.encoded,
            descriptors: [
                memoryFile.fileDescriptor, notifiers.toBackend.fileDescriptor, notifiers.toFrontend.fileDescriptor,
            ]
        )
    }

    /// The backend's end of the ring.
    public var backend: RingEndpoint<MappedMemory> { ring.backend }

    /// Blocks until the frontend signals (or `timeoutMilliseconds` passes).
    public func waitForFrontend(timeoutMilliseconds: Int32 = -1) throws -> Bool {
        try notifiers.toBackend.wait(timeoutMilliseconds: timeoutMilliseconds) != nil
    }

    /// Wakes the frontend.
    public func notifyFrontend() throws { try notifiers.toFrontend.signal() }

    /// Waits for the peer's status byte and its exit; true when it reported success
    /// and exited 0.
    public func finish() throws -> Bool {
        let status = try socket.receive(maxBytes: 1).bytes
        let termination = try child.wait()
        return status == [0] && termination == .exited(0)
    }

    /// Hybrid-mode helpers for the backend side.
    func backendSpinThenBlock(ready: () -> Bool) throws {
        try spinThenBlock(control, ControlPage.backendSleeping, notifiers.toBackend, ready: ready)
    }
    func signalFrontendIfSleeping() throws {
        try signalIfSleeping(control, ControlPage.frontendSleeping, notifiers.toFrontend)
    }
}

/// Figures from one `conch bench ring` run.
public struct RingBenchmarkResult: Sendable, Codable {
    /// Throughput in MB/s (10^6 bytes per second), median and range over the runs.
    public var busyMBps: Spread
    public var eventfdMBps: Spread
    public var hybridMBps: Spread
    /// eventfd ÷ busy and spin-then-block ÷ busy, per run.
    public var eventfdVersusBusy: Spread
    public var hybridVersusBusy: Spread
    public var bytesPerRun: UInt64
    public var writeSize: Int
    public var runs: Int

    enum CodingKeys: String, CodingKey {
        case busyMBps = "busy_mbps"
        case eventfdMBps = "eventfd_mbps"
        case hybridMBps = "hybrid_mbps"
        case eventfdVersusBusy = "eventfd_vs_busy_ratio"
        case hybridVersusBusy = "hybrid_vs_busy_ratio"
        case bytesPerRun = "bytes_per_run"
        case writeSize = "write_size"
        case runs
    }
}

/// The ceiling benchmark: raw console-ring throughput between two processes over
/// a shared page. Every byte received is checked against the pattern, so a
/// broken ring fails the benchmark instead of flattering it.
public enum RingBenchmark {
    public struct PatternMismatch: Error, CustomStringConvertible {
        public let offset: UInt64
        public var description: String { "ring benchmark: byte \(offset) differs from the pattern" }
    }

    public struct PeerFailed: Error, CustomStringConvertible {
        public var description: String { "ring benchmark: the peer process failed" }
    }

    /// Measures one mode once, with this thread and the peer on two different CPUs
    /// (``BaselinePlacement``); returns MB/s.
    public static func measure(
        mode: RingPeerMode,
        totalBytes: UInt64,
        writeSize: Int = 2048,
        peerExecutable: String,
        peerArguments: [String]
    ) throws -> Double {
        precondition(mode != .echo)
        let placement = BaselinePlacement.crossCore()
        let session = try placement.spawningPeer {
            try RingPeerSession(
                executable: peerExecutable,
                arguments: peerArguments,
                request: RingPeerRequest(mode: mode, chunkSize: UInt32(writeSize), totalBytes: totalBytes)
            )
        }
        return try placement.measuring { try receive(session, mode: mode, totalBytes: totalBytes) }
    }

    /// The backend's side of one measurement: reads, checks and counts.
    private static func receive(_ session: RingPeerSession, mode: RingPeerMode, totalBytes: UInt64) throws -> Double {
        let input = session.backend.input
        let expected = (0..<UInt64(2048 + 251)).map(ringTestPattern)
        var buffer = [UInt8](repeating: 0, count: 2048)
        var received: UInt64 = 0
        var started: ContinuousClock.Instant?
        while received < totalBytes {
            let got = try buffer.withUnsafeMutableBytes { try input.read(into: $0) }
            if got > 0 {
                if started == nil { started = .now }
                let phase = Int(received % 251)
                let matches = buffer.withUnsafeBytes { actual in
                    expected.withUnsafeBytes { pattern in
                        memcmp(actual.baseAddress!, pattern.baseAddress! + phase, got) == 0
                    }
                }
                guard matches else { throw PatternMismatch(offset: received) }
                received += UInt64(got)
                switch mode {
                case .produceEventfd: try session.notifyFrontend()
                case .produceHybrid: try session.signalFrontendIfSleeping()
                default: break
                }
                continue
            }
            switch mode {
            case .produceEventfd: _ = try session.waitForFrontend()
            case .produceHybrid: try session.backendSpinThenBlock { (try? input.available()) ?? 1 > 0 }
            default: break
            }
        }
        let elapsed = ContinuousClock.now - (started ?? .now)
        guard try session.finish() else { throw PeerFailed() }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Double(totalBytes) / max(seconds, 1e-9) / 1e6
    }

    /// Runs every mode `runs` times, the modes interleaved within each run (busy,
    /// eventfd, spin-then-block, busy, …), and reports medians and ranges.
    public static func run(
        totalBytes: UInt64 = 256 << 20,
        runs: Int = 3,
        writeSize: Int = 2048,
        peerExecutable: String,
        peerArguments: [String],
        progress: (String) -> Void = { _ in }
    ) throws -> RingBenchmarkResult {
        var eventfd = InterleavedPairs()
        var hybrid = InterleavedPairs()
        for run in 1...runs {
            var figures: [Double] = []
            for mode in [RingPeerMode.produceBusy, .produceEventfd, .produceHybrid] {
                figures.append(
                    try measure(
                        mode: mode,
                        totalBytes: totalBytes,
                        writeSize: writeSize,
                        peerExecutable: peerExecutable,
                        peerArguments: peerArguments
                    )
                )
                progress("ring \(mode) run \(run)/\(runs): \(Int(figures.last!)) MB/s")
            }
            eventfd.record(baseline: figures[0], subject: figures[1])
            hybrid.record(baseline: figures[0], subject: figures[2])
        }
        return RingBenchmarkResult(
            busyMBps: eventfd.baseline(),
            eventfdMBps: eventfd.subject(),
            hybridMBps: hybrid.subject(),
            eventfdVersusBusy: eventfd.ratio(),
            hybridVersusBusy: hybrid.ratio(),
            bytesPerRun: totalBytes,
            writeSize: writeSize,
            runs: runs
        )
    }
}
