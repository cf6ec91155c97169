//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenMemory

/// A ring whose indices break the invariant `prod - cons <= size`. The peer that
/// owns the page wrote nonsense; the caller decides what to do (a backend
/// quarantines the ring). Never a trap, never an out-of-bounds access.
public enum RingError: Error, Hashable, Sendable {
    case invalidIndices(producer: UInt32, consumer: UInt32, size: UInt32)
    /// `consume(n)` asked for more than is readable.
    case consumeBeyondAvailable(requested: Int, available: Int)
}

/// One direction's free-running indices as they are in the page, unvalidated: the
/// other side writes one of them. For recording and reconciling positions (stats,
/// a restarted backend); moving data goes through ``RingReader`` / ``RingWriter``.
public struct RingIndices: Hashable, Sendable {
    public var producer: UInt32
    public var consumer: UInt32
    /// Bytes between the two, in the wrapping arithmetic the protocol uses; more
    /// than the ring's size when the indices are corrupt.
    @inlinable public var queued: UInt32 { producer &- consumer }

    @inlinable
    public init(producer: UInt32, consumer: UInt32) {
        self.producer = producer
        self.consumer = consumer
    }
}

/// The reading end of one ring direction.
///
/// Reading is split in two, as in mirage's `READABLE`: ``peek(into:)`` copies
/// bytes without moving the consumer index, and ``consume(_:)`` moves it later.
/// A backend delivers bytes first and commits them afterwards, so a crash between
/// the two replays rather than loses.
public struct RingReader<Memory: SharedMemory>: Sendable {
    public let memory: Memory
    public let direction: RingDirection

    @inlinable
    public init(memory: Memory, direction: RingDirection) {
        self.memory = memory
        self.direction = direction
    }

    /// Loads both indices: the producer's with acquire ordering (so the data it
    /// published is visible), ours relaxed. Validates them.
    @inlinable
    func indices() throws(RingError) -> (consumer: UInt32, available: UInt32) {
        let producer = memory.load32(at: direction.producerOffset, ordering: .acquiring)
        let consumer = memory.load32(at: direction.consumerOffset, ordering: .relaxed)
        let available = producer &- consumer
        guard available <= direction.size else {
            throw .invalidIndices(producer: producer, consumer: consumer, size: direction.size)
        }
        return (consumer, available)
    }

    /// Both indices as they are, unvalidated; the producer's loaded with acquire
    /// ordering, ours relaxed.
    @inlinable
    public var rawIndices: RingIndices {
        RingIndices(
            producer: memory.load32(at: direction.producerOffset, ordering: .acquiring),
            consumer: memory.load32(at: direction.consumerOffset, ordering: .relaxed)
        )
    }

    /// Number of bytes ready to read.
    @inlinable
    public func available() throws(RingError) -> Int { Int(try indices().available) }

    /// Copies up to `destination.count` readable bytes, starting `skipping` bytes
    /// past the consumer index, without consuming them. Returns how many it copied.
    @inlinable
    public func peek(into destination: UnsafeMutableRawBufferPointer, skipping: Int = 0) throws(RingError) -> Int {
        let (consumer, available) = try indices()
        guard skipping >= 0, skipping < Int(available) else { return 0 }
        let count = min(destination.count, Int(available) - skipping)
        let start = direction.mask(consumer &+ UInt32(skipping))
        let first = min(count, Int(direction.size) - start)
        // SAFETY: `first <= count <= destination.count`; the rest starts at `first`
        // and has `count - first` bytes; `start + first <= size` by construction.
        memory.copyBytes(
            from: direction.dataOffset + start,
            into: UnsafeMutableRawBufferPointer(rebasing: destination[0..<first])
        )
        if count > first {
            memory.copyBytes(
                from: direction.dataOffset,
                into: UnsafeMutableRawBufferPointer(rebasing: destination[first..<count])
            )
        }
        return count
    }

    /// Copies up to `maxCount` readable bytes into a new array without consuming them.
    @inlinable
    public func peek(maxCount: Int) throws(RingError) -> [UInt8] {
        let wanted = min(maxCount, try available())
        var bytes = [UInt8](repeating: 0, count: wanted)
        // Array's closure APIs are `rethrows`, which erases the error type; carry it in a Result.
        let got = try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(RingError) in try peek(into: buffer) }
        }.get()
        bytes.removeLast(wanted - got)
        return bytes
    }

    /// Moves the consumer index forward by `count` bytes (release ordering, so
    /// the producer may reuse the space only after our reads completed).
    @inlinable
    public func consume(_ count: Int) throws(RingError) {
        let (consumer, available) = try indices()
        guard count >= 0, count <= Int(available) else {
            throw .consumeBeyondAvailable(requested: count, available: Int(available))
        }
        memory.store32(consumer &+ UInt32(count), at: direction.consumerOffset, ordering: .releasing)
    }

    /// ``peek(into:skipping:)`` then ``consume(_:)``.
    @inlinable
    public func read(into destination: UnsafeMutableRawBufferPointer) throws(RingError) -> Int {
        let count = try peek(into: destination)
        try consume(count)
        return count
    }

    /// Reads and consumes up to `maxCount` bytes.
    @inlinable
    public func read(maxCount: Int) throws(RingError) -> [UInt8] {
        let bytes = try peek(maxCount: maxCount)
        try consume(bytes.count)
        return bytes
    }
}

/// The writing end of one ring direction.
public struct RingWriter<Memory: SharedMemory>: Sendable {
    public let memory: Memory
    public let direction: RingDirection

    @inlinable
    public init(memory: Memory, direction: RingDirection) {
        self.memory = memory
        self.direction = direction
    }

    /// Loads both indices: the consumer's with acquire ordering (its reads of the
    /// space we are about to reuse are complete), ours relaxed. Validates them.
    @inlinable
    func indices() throws(RingError) -> (producer: UInt32, free: UInt32) {
        let consumer = memory.load32(at: direction.consumerOffset, ordering: .acquiring)
        let producer = memory.load32(at: direction.producerOffset, ordering: .relaxed)
        let queued = producer &- consumer
        guard queued <= direction.size else {
            throw .invalidIndices(producer: producer, consumer: consumer, size: direction.size)
        }
        return (producer, direction.size - queued)
    }

    /// Both indices as they are, unvalidated; the consumer's loaded with acquire
    /// ordering, ours relaxed.
    @inlinable
    public var rawIndices: RingIndices {
        RingIndices(
            producer: memory.load32(at: direction.producerOffset, ordering: .relaxed),
            consumer: memory.load32(at: direction.consumerOffset, ordering: .acquiring)
        )
    }

    /// Free space in bytes.
    @inlinable
    public func freeSpace() throws(RingError) -> Int { Int(try indices().free) }

    /// Copies as much of `source` as fits and publishes it (release ordering on the
    /// producer index). Returns the number of bytes written; 0 when the ring is full.
    @inlinable
    public func write(_ source: UnsafeRawBufferPointer) throws(RingError) -> Int {
        let (producer, free) = try indices()
        let count = min(source.count, Int(free))
        guard count > 0 else { return 0 }
        let start = direction.mask(producer)
        let first = min(count, Int(direction.size) - start)
        // SAFETY: `first <= count <= source.count`; `start + first <= size`.
        memory.copyBytes(to: direction.dataOffset + start, from: UnsafeRawBufferPointer(rebasing: source[0..<first]))
        if count > first {
            memory.copyBytes(to: direction.dataOffset, from: UnsafeRawBufferPointer(rebasing: source[first..<count]))
        }
        memory.store32(producer &+ UInt32(count), at: direction.producerOffset, ordering: .releasing)
        return count
    }

    /// Writes as much of `bytes` as fits; returns the number written.
    @inlinable
    public func write(_ bytes: some Collection<UInt8>) throws(RingError) -> Int {
        // The closure APIs are `rethrows`, which erases the error type; carry it in a Result.
        if let written = bytes.withContiguousStorageIfAvailable({ buffer in
            Result { () throws(RingError) in try write(UnsafeRawBufferPointer(buffer)) }
        }) {
            return try written.get()
        }
        return try Array(bytes).withUnsafeBytes { buffer in
            Result { () throws(RingError) in try write(buffer) }
        }.get()
    }
}

/// One end of a bidirectional ring: what it reads (`input`) and what it writes
/// (`output`). The backend's input is the frontend's output and vice versa.
public struct RingEndpoint<Memory: SharedMemory>: Sendable {
    public let input: RingReader<Memory>
    public let output: RingWriter<Memory>

    @inlinable
    public init(input: RingReader<Memory>, output: RingWriter<Memory>) {
        self.input = input
        self.output = output
    }
}

/// A bidirectional byte ring in one shared page, described by `Layout`.
///
/// ```swift
/// let ring = ByteRing<ConsoleRingLayout, HeapPage>(memory: page)
/// _ = try ring.frontend.output.write(Array("hello".utf8))   // guest → out[]
/// let line = try ring.backend.input.peek(maxCount: 64)      // backend sees it
/// try ring.backend.input.consume(line.count)                // …and commits later
/// ```
public struct ByteRing<Layout: RingLayout, Memory: SharedMemory>: Sendable {
    public let memory: Memory

    @inlinable
    public init(memory: Memory) { self.memory = memory }

    /// The guest's view: reads `backToFront`, writes `frontToBack`.
    @inlinable
    public var frontend: RingEndpoint<Memory> {
        RingEndpoint(
            input: RingReader(memory: memory, direction: Layout.backToFront),
            output: RingWriter(memory: memory, direction: Layout.frontToBack)
        )
    }

    /// The backend's view: reads `frontToBack`, writes `backToFront`.
    @inlinable
    public var backend: RingEndpoint<Memory> {
        RingEndpoint(
            input: RingReader(memory: memory, direction: Layout.frontToBack),
            output: RingWriter(memory: memory, direction: Layout.backToFront)
        )
    }
}
