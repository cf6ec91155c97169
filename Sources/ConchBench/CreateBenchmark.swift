//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import HostSupervision
import SystemExtras
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `conch bench create`'s figures.
public struct CreateBenchmarkResult: Codable, Sendable {
    /// Median and range over the rounds, each round one pair with its baseline.
    public var createToFirstByteMs: Spread
    public var createToFirstByteP99Ms: Double
    public var spawnToFirstByteMs: Spread
    /// create ÷ spawn, per round.
    public var ratio: Spread
    public var create100S: Double
    public var parallel: Int
    public var rounds: Int

    enum CodingKeys: String, CodingKey {
        case createToFirstByteMs = "create_to_first_byte_ms"
        case createToFirstByteP99Ms = "create_to_first_byte_p99_ms"
        case spawnToFirstByteMs = "spawn_to_first_byte_ms"
        case ratio
        case create100S = "create_100_s"
        case parallel
        case rounds
    }
}

/// A benchmark that could not finish, and why.
public struct BenchmarkError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// `conch create -c` to the guest's first console byte, beside spawning the same
/// program bare (the baseline: each round spawns, then creates — interleaved
/// pairs, ``InterleavedPairs``); then `parallel`
/// creates at once, timed until all run. The host stack runs in a scratch run
/// directory, and every `conch` is a separate process, as a user runs it.
public enum CreateBenchmark {
    public static func run(
        conchExecutable conch: String,
        rounds: Int,
        parallel: Int,
        progress: (String) -> Void = { _ in }
    ) async throws -> CreateBenchmarkResult {
        let scratch = try RunDirectory.makeTemporary(prefix: "conch-bench")
        defer { try? FileManager.default.removeItem(atPath: scratch.path) }
        let supervisor = HostSupervisor(runDirectory: scratch, configuration: .quiet)
        try supervisor.start(["hypervisor", "xenstored", "consoled"])
        defer { supervisor.stopAll() }
        let program = ["/bin/sh", "-c", "echo ready; sleep 5"]

        var pairs = InterleavedPairs()
        var samples = LatencySamples()
        for round in 0..<rounds {
            // Baseline: the same program, spawned bare, its first byte on a pipe.
            let spawnStart = ContinuousClock.now
            let (bare, bareOutput) = try spawnReading(program[0], Array(program.dropFirst()))
            _ = nextByte(bareOutput)
            let spawned = spawnStart.duration(to: .now)
            bare.kill(SIGKILL)
            _ = try? bare.wait()
            close(bareOutput)

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
                throw BenchmarkError("round \(round): no console byte from `conch create -c`")
            }
            let created = start.duration(to: .now)
            samples.record(created)
            pairs.record(baseline: spawned.microseconds / 1000, subject: created.microseconds / 1000)
            process.kill(SIGTERM)
            _ = try? process.wait()
            close(output)
            _ = try? runQuiet(conch, ["destroy", "c\(round)", "--run-dir", scratch.path])
            if round % 10 == 9 {
                progress("create→first byte: \(round + 1) rounds, p50 \(rounded(samples.p50 / 1000, places: 2)) ms")
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
        let elapsed = start.duration(to: .now)
        let parallelSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        guard failures == 0 else { throw BenchmarkError("\(failures) of \(parallel) parallel creates failed") }

        return CreateBenchmarkResult(
            createToFirstByteMs: pairs.subject(places: 2),
            createToFirstByteP99Ms: rounded(samples.p99 / 1000, places: 2),
            spawnToFirstByteMs: pairs.baseline(places: 2),
            ratio: pairs.ratio(places: 1),
            create100S: rounded(parallelSeconds, places: 2),
            parallel: parallel,
            rounds: rounds
        )
    }

    /// Spawns a program with its stdout on a pipe; returns the read end.
    private static func spawnReading(_ executable: String, _ arguments: [String]) throws -> (ChildProcess, Int32) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw BenchmarkError("pipe failed: errno \(errno)") }
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
    private static func nextByte(_ descriptor: Int32) -> UInt8? {
        var byte: UInt8 = 0
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 10_000) > 0 && read(descriptor, &byte, 1) == 1 ? byte : nil
    }

    /// Whether a byte arrives after the first line (`create -c` prints the domid first).
    private static func firstByteAfterLine(_ descriptor: Int32) -> Bool {
        while let byte = nextByte(descriptor) {
            if byte == UInt8(ascii: "\n") { return nextByte(descriptor) != nil }
        }
        return false
    }

    private static func runQuiet(_ executable: String, _ arguments: [String]) throws -> ChildProcess.Termination {
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
