//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import XenABI
import XenMemory
import XenRing

/// Drives Conch's ring and the flex-ring helpers of the installed `xen/io/ring.h`
/// with the same random operation sequence and compares every byte read and the
/// final page, byte for byte.
@Suite(
    "Ring differential against xen/io/ring.h",
    .enabled(if: CHarness.headersAvailable, "skipped: install libxen-dev")
)
struct RingDifferentialTests {
    enum Operation {
        case write(direction: Int, length: Int, sequence: Int)
        case read(direction: Int, length: Int)
    }

    /// SplitMix64: a tiny deterministic generator, so a failing seed reproduces.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func payloadByte(sequence: Int, direction: Int, index: Int) -> UInt8 {
        UInt8(
            truncatingIfNeeded: UInt32(truncatingIfNeeded: sequence) &* 31 &+ UInt32(index) &* 7 &+ UInt32(direction)
                &* 101
        )
    }

    static func script(seed: UInt64, count: Int) -> (start: UInt32, operations: [Operation]) {
        var rng = SplitMix64(state: seed)
        // Start within a few KiB of 2^32 half of the time, so the indices wrap.
        let start: UInt32 =
            Bool.random(using: &rng)
            ? UInt32.max &- UInt32.random(in: 0...6000, using: &rng) : .random(in: 0...UInt32.max, using: &rng)
        var operations: [Operation] = []
        for sequence in 0..<count {
            let direction = Int.random(in: 0...1, using: &rng)
            // Mostly small chunks, sometimes whole-ring and oversize ones.
            let length =
                Bool.random(using: &rng) ? Int.random(in: 0...64, using: &rng) : Int.random(in: 0...2100, using: &rng)
            operations.append(
                Bool.random(using: &rng)
                    ? .write(direction: direction, length: length, sequence: sequence)
                    : .read(direction: direction, length: length)
            )
        }
        return (start, operations)
    }

    /// Applies the script with Conch's ring; returns the reads and the page.
    static func runSwift<Layout: RingLayout>(
        _ layout: Layout.Type,
        structSize: Int,
        start: UInt32,
        operations: [Operation]
    ) throws -> (reads: [[UInt8]], page: [UInt8]) {
        let ring = ByteRing<Layout, HeapPage>(memory: HeapPage())
        for direction in [Layout.frontToBack, Layout.backToFront] {
            ring.memory.store32(start, at: direction.consumerOffset, ordering: .relaxed)
            ring.memory.store32(start, at: direction.producerOffset, ordering: .relaxed)
        }
        let writers = [ring.frontend.output, ring.backend.output]
        let readers = [ring.backend.input, ring.frontend.input]
        var reads: [[UInt8]] = []
        for operation in operations {
            switch operation {
            case let .write(direction, length, sequence):
                let bytes = (0..<length).map { payloadByte(sequence: sequence, direction: direction, index: $0) }
                _ = try writers[direction].write(bytes)
            case let .read(direction, length):
                reads.append(try readers[direction].read(maxCount: length))
            }
        }
        return (reads, ring.memory.bytes(at: 0, count: structSize))
    }

    /// Applies the script with the C flex-ring helpers.
    static func runC(
        binary: String,
        layout: String,
        start: UInt32,
        operations: [Operation]
    ) throws -> (
        reads: [[UInt8]], page: [UInt8]
    ) {
        var script = "layout \(layout)\nstart \(start)\n"
        for operation in operations {
            switch operation {
            case let .write(direction, length, sequence): script += "write \(direction) \(length) \(sequence)\n"
            case let .read(direction, length): script += "read \(direction) \(length)\n"
            }
        }
        let result = try CHarness.run(binary, [], input: script)
        guard result.status == 0 else { throw CHarness.Failure(description: "ring_diff failed: \(result.stderr)") }
        var reads: [[UInt8]] = []
        var page: [UInt8] = []
        for line in result.stdout.split(separator: "\n", omittingEmptySubsequences: false) where line.count >= 2 {
            let bytes = hexDecode(line.dropFirst(2))
            if line.hasPrefix("R ") { reads.append(bytes) } else if line.hasPrefix("P ") { page = bytes }
        }
        return (reads, page)
    }

    static func hexDecode(_ text: Substring) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex, let next = text.index(index, offsetBy: 2, limitedBy: text.endIndex) {
            bytes.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    static let binary = Result { try CHarness.build("ring_diff") }

    @Test(arguments: Array(UInt64(1)...40))
    func consoleRingMatchesFlexRing(seed: UInt64) throws {
        let (start, operations) = Self.script(seed: seed, count: 400)
        let swift = try Self.runSwift(ConsoleRingLayout.self, structSize: 3088, start: start, operations: operations)
        let c = try Self.runC(binary: try Self.binary.get(), layout: "console", start: start, operations: operations)
        #expect(swift.reads == c.reads, "seed \(seed): bytes read differ")
        #expect(swift.page == c.page, "seed \(seed): pages differ")
        #expect(swift.reads.contains { !$0.isEmpty }, "seed \(seed) moved no data: the test would prove nothing")
    }

    @Test(arguments: Array(UInt64(100)...120))
    func xenstoreRingMatchesFlexRing(seed: UInt64) throws {
        let (start, operations) = Self.script(seed: seed, count: 400)
        let swift = try Self.runSwift(XenstoreRingLayout.self, structSize: 2076, start: start, operations: operations)
        let c = try Self.runC(binary: try Self.binary.get(), layout: "xenstore", start: start, operations: operations)
        #expect(swift.reads == c.reads, "seed \(seed): bytes read differ")
        #expect(swift.page == c.page, "seed \(seed): pages differ")
    }
}
