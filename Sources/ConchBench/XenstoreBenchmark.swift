//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras
import SystemPackage
import XenABI
import XenstoreClient
import XenstoreWire

#if canImport(Glibc)
import Glibc
#endif

/// Figures from `conch bench xenstore`.
public struct XenstoreBenchmarkResult: Sendable, Codable {
    public var readOpsPerSecond: Double
    public var readP50: Double
    public var readP99: Double
    /// The same read from a task on the global executor (two extra thread hand-offs).
    public var readDefaultExecutorP50: Double
    public var writeOpsPerSecond: Double
    public var writeP50: Double
    public var directoryOpsPerSecond: Double
    public var directoryP50: Double
    public var emptyTransactionOpsPerSecond: Double
    public var emptyTransactionP50: Double
    public var readModifyWriteOpsPerSecond: Double
    public var readModifyWriteP50: Double
    public var clients16OpsPerSecond: Double
    /// Baseline, measured in pairs interleaved with the client's read: a blocking
    /// raw-socket READ round trip, as libxenstore does it, without the async client.
    public var rawReadP50: Spread
    /// The client's read p50 in those pairs.
    public var pairedReadP50: Spread
    /// paired read ÷ raw read, per pair.
    public var readP50VersusRaw: Spread
    public var pairs: Int
    public var operationsPerMeasurement: Int

    enum CodingKeys: String, CodingKey {
        case readOpsPerSecond = "read_ops_per_s"
        case readP50 = "read_p50_us"
        case readP99 = "read_p99_us"
        case readDefaultExecutorP50 = "read_default_executor_p50_us"
        case writeOpsPerSecond = "write_ops_per_s"
        case writeP50 = "write_p50_us"
        case directoryOpsPerSecond = "directory_ops_per_s"
        case directoryP50 = "directory_p50_us"
        case emptyTransactionOpsPerSecond = "tx_empty_ops_per_s"
        case emptyTransactionP50 = "tx_empty_p50_us"
        case readModifyWriteOpsPerSecond = "tx_rmw_ops_per_s"
        case readModifyWriteP50 = "tx_rmw_p50_us"
        case clients16OpsPerSecond = "clients16_ops_per_s"
        case rawReadP50 = "raw_socket_read_p50_us"
        case pairedReadP50 = "paired_read_p50_us"
        case readP50VersusRaw = "read_p50_vs_raw_ratio"
        case pairs
        case operationsPerMeasurement = "ops_per_measurement"
    }
}

/// `conch bench xenstore`: starts a fresh `conch xenstored`, then measures each
/// operation through the async client over its Unix socket.
public enum XenstoreBenchmark {
    public struct DaemonDidNotStart: Error, CustomStringConvertible {
        public var description: String { "conch xenstored did not start listening" }
    }

    public static func run(
        conchExecutable: String,
        operations: Int = 20_000,
        pairs: Int = 7,
        progress: (String) -> Void = { _ in }
    ) async throws -> XenstoreBenchmarkResult {
        let daemon = try await BenchDaemon.start(conchExecutable)
        defer { daemon.stop() }
        let (client, socketPath) = (daemon.client, daemon.socketPath)

        let path = "/local/domain/0/bench/value"
        try await client.write(path, "0")

        func measure(
            _ name: String,
            _ body: () async throws -> Void
        ) async throws -> (opsPerSecond: Double, samples: LatencySamples) {
            for _ in 0..<min(1000, operations / 10) { try await body() }  // warm up
            var samples = LatencySamples()
            let clock = ContinuousClock()
            let started = clock.now
            for _ in 0..<operations {
                let start = clock.now
                try await body()
                samples.record(clock.now - start)
            }
            let rate = Double(operations) / (clock.now - started).seconds
            progress("\(name): \(Int(rate)) ops/s, p50 \(rounded(samples.p50)) µs, p99 \(rounded(samples.p99)) µs")
            return (rate, samples)
        }

        // For comparison: the same read from a task on the default (global) executor,
        // which pays two thread hand-offs per round trip.
        let readDefaultExecutor = try await measure("read (default executor)") { _ = try await client.read(path) }

        // The measurements proper run on the connection's own event loop, as the
        // client documents for latency-sensitive callers.
        let (read, write, directory, empty, rmw) = try await withTaskExecutorPreference(client.preferredExecutor) {
            func timed(_ operation: Operation) async throws -> (opsPerSecond: Double, samples: LatencySamples) {
                try await measure(operation.label) {
                    try await operation.perform(on: client, value: path, directory: "/local/domain/0/bench")
                }
            }
            return (
                try await timed(.read), try await timed(.write), try await timed(.directory),
                try await timed(.emptyTransaction), try await timed(.readModifyWrite)
            )
        }

        // 16 clients, each with its own connection, reading in a loop.
        let perClient = operations / 4
        let clock = ContinuousClock()
        let started = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    let own = try await XenstoreClient.connect(socketPath: socketPath)
                    defer { own.close() }
                    try await withTaskExecutorPreference(own.preferredExecutor) {
                        for _ in 0..<perClient { _ = try await own.read(path) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let aggregate = Double(16 * perClient) / (clock.now - started).seconds
        progress("16 clients: \(Int(aggregate)) ops/s")

        // The ratio: the raw blocking read (the baseline) and the client's read, interleaved.
        var readPairs = InterleavedPairs()
        for pair in 1...pairs {
            let raw = try rawReadLatency(socketPath: socketPath, path: path, operations: operations)
            let paired = try await withTaskExecutorPreference(client.preferredExecutor) {
                try await measure("read") { _ = try await client.read(path) }
            }
            readPairs.record(baseline: raw.p50, subject: paired.samples.p50)
            progress("pair \(pair)/\(pairs): raw blocking socket read p50 \(rounded(raw.p50)) µs")
        }

        return XenstoreBenchmarkResult(
            readOpsPerSecond: rounded(read.opsPerSecond),
            readP50: rounded(read.samples.p50),
            readP99: rounded(read.samples.p99),
            readDefaultExecutorP50: rounded(readDefaultExecutor.samples.p50),
            writeOpsPerSecond: rounded(write.opsPerSecond),
            writeP50: rounded(write.samples.p50),
            directoryOpsPerSecond: rounded(directory.opsPerSecond),
            directoryP50: rounded(directory.samples.p50),
            emptyTransactionOpsPerSecond: rounded(empty.opsPerSecond),
            emptyTransactionP50: rounded(empty.samples.p50),
            readModifyWriteOpsPerSecond: rounded(rmw.opsPerSecond),
            readModifyWriteP50: rounded(rmw.samples.p50),
            clients16OpsPerSecond: rounded(aggregate),
            rawReadP50: readPairs.baseline(),
            pairedReadP50: readPairs.subject(),
            readP50VersusRaw: readPairs.ratio(),
            pairs: pairs,
            operationsPerMeasurement: operations
        )
    }

    /// READ round trips over a blocking socket: encode, `send`, `recv` until the
    /// reply is complete — the shape of libxenstore's own client.
    static func rawReadLatency(socketPath: String, path: String, operations: Int) throws -> LatencySamples {
        let fd = try UnixSocketPath.connect(socketPath)
        defer { close(fd) }
        let request = XenstoreMessage(type: .read, reqID: 0, payload: XenstorePayload.string(path)).encoded()
        var buffer = [UInt8](repeating: 0, count: 8192)
        var samples = LatencySamples()
        let clock = ContinuousClock()
        for index in 0..<(operations + operations / 10) {
            let start = clock.now
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            var decoder = XenstoreDecoder()
            var reply: [XenstoreMessage] = []
            while reply.isEmpty {
                let got = recv(fd, &buffer, buffer.count, 0)
                guard got > 0 else { throw Errno.connectionReset }
                reply = decoder.feed(buffer.prefix(got))
            }
            if index >= operations / 10 { samples.record(clock.now - start) }
        }
        return samples
    }
}

/// `conch bench xenstore --against PATH`: one operation mix against conch
/// xenstored and against another daemon listening on PATH (Debian's cxenstored or
/// oxenstored on a Xen host, say), in interleaved pairs.
public struct XenstoreComparisonResult: Sendable, Codable {
    /// Per operation (`read`, `write`, `directory`, `tx_empty`, `tx_rmw`).
    public struct Operation: Sendable, Codable {
        public var conchP50: Spread
        public var otherP50: Spread
        /// conch ÷ other, per pair: below 1 means conch is faster.
        public var ratio: Spread

        enum CodingKeys: String, CodingKey {
            case conchP50 = "conch_p50_us"
            case otherP50 = "other_p50_us"
            case ratio
        }
    }

    /// A figure at scale on both daemons (``XenstoreScaleFigures``).
    public struct ScaleFigure: Sendable, Codable {
        public var conch: Spread
        public var other: Spread
        /// conch ÷ other, per pair: for a `_per_s` figure above 1 means conch is
        /// faster, for a `_s` figure below 1.
        public var ratio: Spread
    }

    public var against: String
    public var operations: [String: Operation]
    /// Wall time of the whole mix, conch ÷ other, per pair.
    public var mixRatio: Spread
    /// With `--scale`: each figure of ``XenstoreScaleFigures`` by its key.
    public var scale: [String: ScaleFigure]?
    public var pairs: Int
    public var operationsPerMeasurement: Int

    enum CodingKeys: String, CodingKey {
        case against, operations
        case mixRatio = "mix_ratio"
        case scale
        case pairs
        case operationsPerMeasurement = "ops_per_measurement"
    }
}

extension XenstoreBenchmark {
    /// The operations the benchmarks time, in the order they run; the raw value
    /// is the key in `--against`'s JSON.
    public enum Operation: String, CaseIterable, Sendable {
        case read, write, directory
        case emptyTransaction = "tx_empty"
        case readModifyWrite = "tx_rmw"

        var label: String {
            switch self {
            case .emptyTransaction: "empty transaction"
            case .readModifyWrite: "read-modify-write transaction"
            default: rawValue
            }
        }

        /// Performs it once on `client`, on the node `value` whose parent is `directory`.
        func perform(on client: XenstoreClient, value: String, directory: String) async throws {
            switch self {
            case .read: _ = try await client.read(value)
            case .write: try await client.write(value, "value")
            case .directory: _ = try await client.directory(directory)
            case .emptyTransaction:
                let transaction = try await client.startTransaction()
                try await client.endTransaction(transaction, commit: true)
            case .readModifyWrite:
                try await client.transaction { transaction in
                    let count = Int(try await client.readString(value, transaction: transaction)) ?? 0
                    try await client.write(value, String(count + 1), transaction: transaction)
                }
            }
        }
    }

    /// How big the `--scale` figures are.
    public struct ScaleOptions: Sendable {
        public var operationsPerClient: Int
        public var watchers: Int
        public var watchedWrites: Int
        public var nodes: Int
        public var idleConnections: Int

        public init(operationsPerClient: Int, watchers: Int, watchedWrites: Int, nodes: Int, idleConnections: Int) {
            self.operationsPerClient = operationsPerClient
            self.watchers = watchers
            self.watchedWrites = watchedWrites
            self.nodes = nodes
            self.idleConnections = idleConnections
        }
    }

    public static func compare(
        conchExecutable: String,
        against otherSocket: String,
        operations: Int,
        pairs: Int,
        scale: ScaleOptions? = nil,
        progress: (String) -> Void = { _ in }
    ) async throws -> XenstoreComparisonResult {
        let daemon = try await BenchDaemon.start(conchExecutable)
        defer { daemon.stop() }
        let (conch, socketPath) = (daemon.client, daemon.socketPath)
        let other: XenstoreClient
        do {
            other = try await XenstoreClient.connect(socketPath: otherSocket)
        } catch {
            throw BenchmarkError("nothing answers on \(otherSocket): \(error)")
        }
        defer { other.close() }

        var perOperation = Dictionary(
            uniqueKeysWithValues: Operation.allCases.map { ($0.rawValue, InterleavedPairs()) }
        )
        var mix = InterleavedPairs()
        var scalePairs: [String: InterleavedPairs] = [:]
        func scaled(_ socket: String, _ options: ScaleOptions) async throws -> [String: Double] {
            let figures = try await scaleFigures(
                socket: socket,
                operationsPerClient: options.operationsPerClient,
                watchers: options.watchers,
                watchedWrites: options.watchedWrites,
                nodes: options.nodes,
                idleConnections: options.idleConnections
            )
            let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(figures)) as? [String: Double]
            return object ?? [:]
        }
        for pair in 1...pairs {
            if let scale {
                let otherFigures = try await scaled(otherSocket, scale)
                let conchFigures = try await scaled(socketPath, scale)
                for (key, value) in otherFigures {
                    scalePairs[key, default: InterleavedPairs()].record(
                        baseline: value,
                        subject: conchFigures[key] ?? 0
                    )
                }
                progress("pair \(pair)/\(pairs): scale figures on both")
            }
            let (otherFigures, otherWall) = try await mixTimes(other, operations: operations)
            let (conchFigures, conchWall) = try await mixTimes(conch, operations: operations)
            for operation in Operation.allCases.map(\.rawValue) {
                perOperation[operation]!.record(baseline: otherFigures[operation]!, subject: conchFigures[operation]!)
            }
            mix.record(baseline: otherWall, subject: conchWall)
            progress(
                "pair \(pair)/\(pairs): mix \(rounded(conchWall, places: 3)) s on conch, "
                    + "\(rounded(otherWall, places: 3)) s on \(otherSocket)"
            )
        }
        return XenstoreComparisonResult(
            against: otherSocket,
            operations: perOperation.mapValues {
                .init(conchP50: $0.subject(), otherP50: $0.baseline(), ratio: $0.ratio())
            },
            mixRatio: mix.ratio(),
            scale: scale == nil
                ? nil
                : Dictionary(
                    uniqueKeysWithValues: scalePairs.map { key, pairs in
                        // Seconds to the microsecond (a small store's listing takes less than
                        // a millisecond); rates to a tenth.
                        let places = key.hasSuffix("_s") ? 6 : 1
                        return (
                            key,
                            XenstoreComparisonResult.ScaleFigure(
                                conch: pairs.subject(places: places),
                                other: pairs.baseline(places: places),
                                ratio: pairs.ratio()
                            )
                        )
                    }
                ),
            pairs: pairs,
            operationsPerMeasurement: operations
        )
    }

    /// Every compared operation `operations` times on `client`, under a scratch
    /// node of dom0's (removed afterwards): the p50 of each, in µs, and the wall
    /// time of the whole mix in seconds.
    static func mixTimes(
        _ client: XenstoreClient,
        operations: Int
    ) async throws -> (p50: [String: Double], wall: Double) {
        let base = "/local/domain/0/conch-bench-\(getpid())"
        let path = base + "/value"
        try await client.write(path, "0")
        for index in 0..<8 { try await client.write(base + "/child\(index)", "x") }
        let figures = try await withTaskExecutorPreference(client.preferredExecutor) {
            let clock = ContinuousClock()
            let started = clock.now
            var p50: [String: Double] = [:]
            for operation in Operation.allCases {
                var samples = LatencySamples()
                for _ in 0..<operations {
                    let start = clock.now
                    try await operation.perform(on: client, value: path, directory: base)
                    samples.record(clock.now - start)
                }
                p50[operation.rawValue] = samples.p50
            }
            return (p50: p50, wall: (clock.now - started).seconds)
        }
        try await client.remove(base)
        return figures
    }
}

/// Throughput at scale on one daemon: mixed work from many clients at once,
/// one subtree watched a thousand times, and a store of many nodes.
public struct XenstoreScaleFigures: Sendable, Codable {
    /// Operations per second over 16 and 64 connections at once, each cycling
    /// read, write, directory and a read-modify-write transaction on its own node.
    public var clients16OpsPerSecond: Double
    public var clients64OpsPerSecond: Double
    /// Watch events delivered per second with `watchers` watches on one subtree.
    public var watchEventsPerSecond: Double
    /// Seconds to create `nodes` nodes under one parent (pipelined, 100 at a time),
    /// to list them, and to remove them all.
    public var nodesCreateSeconds: Double
    public var nodesListSeconds: Double
    public var nodesRemoveSeconds: Double
    /// Writes per second from one connection while `idleConnections` others are open
    /// and hold nothing, and one more holds a watch elsewhere: what a change costs on
    /// a host with many guests' connections, of which few watch.
    public var writesBesideIdlePerSecond: Double

    enum CodingKeys: String, CodingKey {
        case clients16OpsPerSecond = "clients16_ops_per_s"
        case clients64OpsPerSecond = "clients64_ops_per_s"
        case watchEventsPerSecond = "watch_events_per_s"
        case nodesCreateSeconds = "nodes_create_s"
        case nodesListSeconds = "nodes_list_s"
        case nodesRemoveSeconds = "nodes_remove_s"
        case writesBesideIdlePerSecond = "writes_beside_idle_per_s"
    }
}

extension XenstoreBenchmark {
    /// The scale figures on the daemon at `socket`, under a scratch node of dom0's
    /// that is removed afterwards.
    public static func scaleFigures(
        socket: String,
        operationsPerClient: Int,
        watchers: Int,
        watchedWrites: Int,
        nodes: Int,
        idleConnections: Int
    ) async throws -> XenstoreScaleFigures {
        let base = "/local/domain/0/conch-bench-scale-\(getpid())"
        let clock = ContinuousClock()

        func mixedClients(_ count: Int) async throws -> Double {
            let started = clock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<count {
                    group.addTask {
                        let client = try await XenstoreClient.connect(socketPath: socket)
                        defer { client.close() }
                        let node = "\(base)/c\(index)"
                        try await client.write(node + "/value", "0")
                        try await withTaskExecutorPreference(client.preferredExecutor) {
                            for _ in 0..<(operationsPerClient / 4) {
                                for operation in [Operation.read, .write, .directory, .readModifyWrite] {
                                    try await operation.perform(on: client, value: node + "/value", directory: node)
                                }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            return Double(count * (operationsPerClient / 4) * 4) / started.duration(to: .now).seconds
        }
        let clients16 = try await mixedClients(16)
        let clients64 = try await mixedClients(64)

        // `watchers` watches on one subtree, spread over connections of 100 each.
        let watched = base + "/watched"
        let writer = try await XenstoreClient.connect(socketPath: socket)
        defer { writer.close() }
        try await writer.write(watched + "/value", "0")
        var watching: [XenstoreClient] = []
        defer { for client in watching { client.close() } }
        let expected = watchers * watchedWrites
        let eventsPerSecond = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<watchers {
                if index % 100 == 0 { watching.append(try await XenstoreClient.connect(socketPath: socket)) }
                let events = try await watching.last!.watch(watched, token: "w\(index)")
                group.addTask {
                    // The first event is the watch's own, on registration.
                    var seen = -1
                    for await _ in events {
                        seen += 1
                        if seen == watchedWrites { break }
                    }
                    return seen
                }
            }
            // A daemon that stops delivering must not hang the benchmark.
            group.addTask {
                try await Task.sleep(for: .seconds(60))
                throw BenchmarkError("\(expected) watch events did not arrive within 60 s")
            }
            // Every watcher has its registration event queued; time the writes' events.
            // Each write is to a node of its own: daemons may merge an event into an
            // identical one still unsent (cxenstored and conch both do), so writes to
            // one node would not promise one event each.
            let started = clock.now
            for round in 0..<watchedWrites { try await writer.write(watched + "/value\(round)", "\(round)") }
            var delivered = 0
            for _ in 0..<watchers { delivered += try await group.next() ?? 0 }
            group.cancelAll()
            guard delivered == expected else {
                throw BenchmarkError("\(delivered) watch events of \(expected) arrived")
            }
            return Double(delivered) / started.duration(to: .now).seconds
        }

        // `nodes` children of one node: create (pipelined), list, remove.
        let parent = base + "/nodes"
        var started = clock.now
        for first in stride(from: 0, to: nodes, by: 100) {
            let batch = (first..<min(first + 100, nodes)).map {
                XenstoreClient.BatchRequest.write("\(parent)/n\($0)", "x")
            }
            for result in try await writer.batch(batch) {
                if case .failure(let error) = result { throw BenchmarkError("creating \(nodes) nodes: \(error)") }
            }
        }
        let createSeconds = started.duration(to: .now).seconds
        started = clock.now
        let listed = try await writer.directory(parent)
        let listSeconds = started.duration(to: .now).seconds
        guard listed.count == nodes else { throw BenchmarkError("listed \(listed.count) of \(nodes) nodes") }
        started = clock.now
        try await writer.remove(parent)
        let removeSeconds = started.duration(to: .now).seconds

        // Writes beside `idleConnections` connections that hold nothing and one that
        // watches elsewhere: a daemon that looks at every connection for every change
        // slows down with them; one that looks only at watchers does not.
        raiseDescriptorLimit()
        var idle: [XenstoreClient] = []
        defer { for client in idle { client.close() } }
        for _ in 0..<idleConnections { idle.append(try await XenstoreClient.connect(socketPath: socket)) }
        let watcher = try await XenstoreClient.connect(socketPath: socket)
        defer { watcher.close() }
        _ = try await watcher.watch(base + "/elsewhere", token: "elsewhere")
        let besideIdleWrites = max(1, operationsPerClient / 4)
        started = clock.now
        for round in 0..<besideIdleWrites { try await writer.write(base + "/beside-idle", "\(round)") }
        let besideIdle = Double(besideIdleWrites) / started.duration(to: .now).seconds
        try await writer.remove(base)

        return XenstoreScaleFigures(
            clients16OpsPerSecond: rounded(clients16),
            clients64OpsPerSecond: rounded(clients64),
            watchEventsPerSecond: rounded(eventsPerSecond),
            nodesCreateSeconds: rounded(createSeconds, places: 6),
            nodesListSeconds: rounded(listSeconds, places: 6),
            nodesRemoveSeconds: rounded(removeSeconds, places: 6),
            writesBesideIdlePerSecond: rounded(besideIdle)
        )
    }
}

/// A fresh conch xenstored serving only a scratch socket — no run directory, and
/// no hypervisor even on a Xen dom0, where the host's own xenstored holds the real
/// one — with a client connected to it.
struct BenchDaemon {
    let socketPath: String
    let client: XenstoreClient
    private let process: ChildProcess
    private let scratch: String

    static func start(_ conchExecutable: String) async throws -> BenchDaemon {
        let scratch = try RunDirectory.makeTemporary(prefix: "conch-bench").path
        let socketPath = scratch + "/xenstored.sock"
        let process = try ChildProcess(
            executable: conchExecutable,
            arguments: ["xenstored", "--socket", socketPath, "--hypervisor", "simulated", "--log-level", "warning"]
        )
        for _ in 0..<500 {
            if let client = try? await XenstoreClient.connect(socketPath: socketPath) {
                return BenchDaemon(socketPath: socketPath, client: client, process: process, scratch: scratch)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        process.kill(SIGTERM)
        _ = try? process.wait()
        rmdir(scratch)
        throw XenstoreBenchmark.DaemonDidNotStart()
    }

    func stop() {
        client.close()
        process.kill(SIGTERM)
        _ = try? process.wait()
        unlink(socketPath)
        rmdir(scratch)
    }
}
