//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// The newest `capacity` bytes of a stream, in a fixed circular buffer.
///
/// Shared by ``ConsoleHistory`` (backend) and ``GuestBootHistory`` (frontend).
/// Appending is O(appended bytes); nothing is ever moved.
struct ByteHistoryBuffer: Sendable, Equatable {
    let capacity: Int
    /// Allocated on first use, then always `capacity` long.
    private var storage: [UInt8] = []
    /// Index of the oldest retained byte.
    private var head = 0
    /// Retained bytes; `0 ≤ count ≤ capacity`.
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(0, capacity)
    }

    /// Appends `bytes`, dropping the oldest as needed; returns how many were dropped
    /// (old retained bytes and, if `bytes` alone exceeds the capacity, its own head).
    mutating func append(_ bytes: some Collection<UInt8>) -> Int {
        let incoming = bytes.count
        guard incoming > 0 else { return 0 }
        guard capacity > 0 else { return incoming }
        if storage.isEmpty { storage = [UInt8](repeating: 0, count: capacity) }
        if incoming >= capacity {
            let dropped = count + (incoming - capacity)
            var index = 0
            for byte in bytes.dropFirst(incoming - capacity) {
                storage[index] = byte
                index += 1
            }
            head = 0
            count = capacity
            return dropped
        }
        let overflow = max(0, count + incoming - capacity)
        removeOldest(overflow)
        var tail = (head + count) % capacity
        for byte in bytes {
            storage[tail] = byte
            tail += 1
            if tail == capacity { tail = 0 }
        }
        count += incoming
        return overflow
    }

    /// Forgets the `k` oldest bytes (all of them if `k ≥ count`).
    mutating func removeOldest(_ k: Int) {
        let removed = min(max(0, k), count)
        guard removed > 0 else { return }
        head = (head + removed) % capacity
        count -= removed
    }

    mutating func removeAll() {
        head = 0
        count = 0
    }

    /// The retained bytes, oldest first.
    var bytes: [UInt8] {
        guard count > 0 else { return [] }
        let firstRun = min(count, capacity - head)
        return Array(storage[head..<head + firstRun]) + storage[0..<count - firstRun]
    }
}

/// consoled's bounded history of console 0 output, replayed to each newly attached
/// client so that `conch console` shows recent context (a login prompt, the tail of
/// the boot).
///
/// The history is a window, not a queue: replaying does not consume it, and every
/// later client gets the then-newest `capacity` bytes. The console log (when
/// enabled) keeps everything; the history only serves clients.
///
/// ## Never silent
///
/// `droppedBytes` counts every byte that fell out of the window, and ``replay()``
/// puts a marker line in front of the retained bytes whenever any did:
///
/// ```
/// capacity 8; append "abcdef"; append "ghijk"
///   retained  = "defghijk"          (8 bytes)
///   dropped   = 3                   ("abc")
///   replay()  = "\r\n[conch: 3 bytes of earlier output dropped]\r\n" + "defghijk"
/// ```
///
/// Invariant: `retained.count + droppedBytes == totalAppended`, and `retained` is
/// the suffix of everything appended.
public struct ConsoleHistory: Sendable, Equatable {
    /// 64 KiB, the default for console 0.
    public static let defaultCapacity = 64 * 1024

    private var buffer: ByteHistoryBuffer
    /// Every byte ever appended.
    public private(set) var totalAppended: UInt64 = 0

    /// An empty history holding at most `capacity` bytes (negative counts as 0: then
    /// everything is dropped, and counted).
    public init(capacity: Int = ConsoleHistory.defaultCapacity) {
        buffer = ByteHistoryBuffer(capacity: capacity)
    }

    /// The most bytes retained.
    public var capacity: Int { buffer.capacity }
    /// Bytes currently retained.
    public var count: Int { buffer.count }
    public var isEmpty: Bool { buffer.count == 0 }
    /// Bytes that fell out of the window since the history was created.
    public var droppedBytes: UInt64 { totalAppended - UInt64(buffer.count) }
    /// The retained bytes, oldest first.
    public var retained: [UInt8] { buffer.bytes }

    /// Appends output; returns how many bytes this call pushed out of the window, so
    /// the caller can add them to its drop counter.
    @discardableResult
    public mutating func append(_ bytes: some Collection<UInt8>) -> Int {
        totalAppended = totalAppended.addingSaturated(UInt64(bytes.count))
        return buffer.append(bytes)
    }

    /// What a newly attached client receives: the drop marker (only if anything was
    /// dropped) followed by the retained bytes.
    public func replay() -> [UInt8] {
        let dropped = droppedBytes
        return dropped == 0 ? retained : Self.dropMarker(droppedBytes: dropped) + retained
    }

    /// `\r\n[conch: N bytes of earlier output dropped]\r\n`. The leading CR LF ends
    /// whatever line the client's terminal was on, so the marker stands alone.
    public static func dropMarker(droppedBytes: UInt64) -> [UInt8] {
        Array("\r\n[conch: \(droppedBytes) bytes of earlier output dropped]\r\n".utf8)
    }
}

/// The guest frontend's copy of console 0 output written while the backend was
/// disconnected (and therefore sent to the hypervisor console), replayed into the
/// ring once a backend connects so that the console log holds the whole boot.
///
/// Unlike ``ConsoleHistory`` it is a queue: the frontend empties it by replaying
/// it, and `droppedBytes` counts what fell out since the last complete replay.
///
/// ```
/// capacity 4; record "hello"          → retained "ello", dropped 1
/// replayMarker() = "[conch: replaying 4 bytes written while the console was disconnected;
///                   1 earlier bytes dropped]\r\n"            (one line)
/// ```
public struct GuestBootHistory: Sendable, Equatable {
    /// 64 KiB, as the issue asks.
    public static let defaultCapacity = 64 * 1024

    private var buffer: ByteHistoryBuffer
    /// Bytes dropped and not yet announced by a replay marker that reached the ring.
    public private(set) var droppedBytes: UInt64 = 0

    public init(capacity: Int = GuestBootHistory.defaultCapacity) {
        buffer = ByteHistoryBuffer(capacity: capacity)
    }

    public var capacity: Int { buffer.capacity }
    public var count: Int { buffer.count }
    public var isEmpty: Bool { buffer.count == 0 && droppedBytes == 0 }
    /// The retained bytes, oldest first.
    public var retained: [UInt8] { buffer.bytes }

    /// Keeps a copy of bytes that went to the hypervisor console.
    public mutating func record(_ bytes: some Collection<UInt8>) {
        droppedBytes = droppedBytes.addingSaturated(UInt64(buffer.append(bytes)))
    }

    /// The one line that precedes a replay; it names the retained count and, if any
    /// were dropped, how many older bytes are missing.
    public func replayMarker() -> [UInt8] {
        var text = "[conch: replaying \(buffer.count) bytes written while the console was disconnected"
        if droppedBytes > 0 { text += "; \(droppedBytes) earlier bytes dropped" }
        return Array((text + "]\r\n").utf8)
    }

    /// Forgets the `k` oldest retained bytes: they reached the ring.
    mutating func removeOldest(_ k: Int) { buffer.removeOldest(k) }

    /// The replay marker announcing the drops has reached the ring.
    mutating func clearDropCount() { droppedBytes = 0 }
}
