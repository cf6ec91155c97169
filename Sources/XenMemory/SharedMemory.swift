//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Synchronization

/// Ordering of a load from memory another party may write concurrently.
public enum LoadOrdering: Sendable {
    /// No ordering: for values only this side writes.
    case relaxed
    /// Later reads see everything the writer published before its releasing store.
    /// This is Xen's "read the peer's index, then `rmb()`".
    case acquiring
}

/// Ordering of a store to memory another party may read concurrently.
public enum StoreOrdering: Sendable {
    case relaxed
    /// Everything written before becomes visible to a peer that loads this value
    /// with `.acquiring`. This is Xen's "`wmb()`, then publish the index".
    case releasing
}

/// What a consumer of shared memory needs: bounds-checked byte copies and ordered
/// integer loads and stores. How the memory is provided (a heap page in a test,
/// a memfd mapping, a grant mapped from another domain) is not this protocol's
/// business — see rust-vmm vm-memory's "define consumer-side interfaces".
///
/// Every offset is checked against ``byteCount``: a bad offset is a programming
/// error in Conch (offsets come from layouts, never from a guest) and traps.
/// Guest-controlled values (ring indices) are masked before they become offsets.
public protocol SharedMemory: AnyObject, Sendable {
    /// Size of the region in bytes.
    var byteCount: Int { get }

    /// Loads a 32-bit little-endian-in-memory value at a 4-aligned offset.
    func load32(at offset: Int, ordering: LoadOrdering) -> UInt32
    /// Stores a 32-bit value at a 4-aligned offset.
    func store32(_ value: UInt32, at offset: Int, ordering: StoreOrdering)
    /// Loads one byte.
    func load8(at offset: Int, ordering: LoadOrdering) -> UInt8
    /// Stores one byte.
    func store8(_ value: UInt8, at offset: Int, ordering: StoreOrdering)
    /// Copies `destination.count` bytes starting at `offset` out of the region.
    func copyBytes(from offset: Int, into destination: UnsafeMutableRawBufferPointer)
    /// Copies `source` into the region starting at `offset`.
    func copyBytes(to offset: Int, from source: UnsafeRawBufferPointer)
}

/// A non-owning view of raw memory that implements every ``SharedMemory``
/// operation. Owners (``HeapPage``, the memfd mapping in SystemExtras) keep the
/// memory alive and forward to this; it is the one place the barriers live.
public struct RawMemoryRegion: @unchecked Sendable {
    // SAFETY: `base` points to `byteCount` bytes that stay mapped for as long as
    // the owning object lives; every accessor checks its range first.
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int

    @inlinable
    public init(base: UnsafeMutableRawPointer, byteCount: Int) {
        precondition(byteCount >= 0)
        self.base = base
        self.byteCount = byteCount
    }

    @inlinable
    func checkRange(_ offset: Int, _ count: Int) {
        precondition(offset >= 0 && count >= 0 && offset <= byteCount - count, "access outside shared memory")
    }

    @inlinable
    public func load32(at offset: Int, ordering: LoadOrdering) -> UInt32 {
        checkRange(offset, 4)
        precondition(offset & 3 == 0, "unaligned 32-bit access")
        // SAFETY: in range and 4-aligned (checked above); `Atomic<UInt32>` has the
        // layout of a UInt32, and the view is only borrowed, never initialised or
        // destroyed, because the owner manages the memory.
        let atomic = (base + offset).assumingMemoryBound(to: Atomic<UInt32>.self)
        switch ordering {
        case .relaxed: return UInt32(littleEndian: atomic.pointee.load(ordering: .relaxed))
        case .acquiring: return UInt32(littleEndian: atomic.pointee.load(ordering: .acquiring))
        }
    }

    @inlinable
    public func store32(_ value: UInt32, at offset: Int, ordering: StoreOrdering) {
        checkRange(offset, 4)
        precondition(offset & 3 == 0, "unaligned 32-bit access")
        // SAFETY: as in `load32`.
        let atomic = (base + offset).assumingMemoryBound(to: Atomic<UInt32>.self)
        switch ordering {
        case .relaxed: atomic.pointee.store(value.littleEndian, ordering: .relaxed)
        case .releasing: atomic.pointee.store(value.littleEndian, ordering: .releasing)
        }
    }

    @inlinable
    public func load8(at offset: Int, ordering: LoadOrdering) -> UInt8 {
        checkRange(offset, 1)
        // SAFETY: in range (checked above); as in `load32`.
        let atomic = (base + offset).assumingMemoryBound(to: Atomic<UInt8>.self)
        switch ordering {
        case .relaxed: return atomic.pointee.load(ordering: .relaxed)
        case .acquiring: return atomic.pointee.load(ordering: .acquiring)
        }
    }

    @inlinable
    public func store8(_ value: UInt8, at offset: Int, ordering: StoreOrdering) {
        checkRange(offset, 1)
        // SAFETY: in range (checked above); as in `load32`.
        let atomic = (base + offset).assumingMemoryBound(to: Atomic<UInt8>.self)
        switch ordering {
        case .relaxed: atomic.pointee.store(value, ordering: .relaxed)
        case .releasing: atomic.pointee.store(value, ordering: .releasing)
        }
    }

    @inlinable
    public func copyBytes(from offset: Int, into destination: UnsafeMutableRawBufferPointer) {
        checkRange(offset, destination.count)
        guard let target = destination.baseAddress, destination.count > 0 else { return }
        // SAFETY: source range checked above; destination is a valid buffer of `count` bytes.
        target.copyMemory(from: base + offset, byteCount: destination.count)
    }

    @inlinable
    public func copyBytes(to offset: Int, from source: UnsafeRawBufferPointer) {
        checkRange(offset, source.count)
        guard let origin = source.baseAddress, source.count > 0 else { return }
        // SAFETY: target range checked above; source is a valid buffer of `count` bytes.
        (base + offset).copyMemory(from: origin, byteCount: source.count)
    }
}

extension SharedMemory {
    /// Reads `count` bytes at `offset` into a new array.
    public func bytes(at offset: Int, count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            copyBytes(from: offset, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    /// Writes `bytes` at `offset`.
    public func write(_ bytes: some Collection<UInt8>, at offset: Int) {
        let array = Array(bytes)
        array.withUnsafeBytes { copyBytes(to: offset, from: $0) }
    }
}

/// An owner of a ``RawMemoryRegion`` (a heap page, a memory mapping) gets every
/// ``SharedMemory`` operation by forwarding to its region.
public protocol RegionBackedMemory: SharedMemory {
    var region: RawMemoryRegion { get }
}

extension RegionBackedMemory {
    @inlinable public var byteCount: Int { region.byteCount }
    @inlinable public func load32(at offset: Int, ordering: LoadOrdering) -> UInt32 {
        region.load32(at: offset, ordering: ordering)
    }
    @inlinable public func store32(_ value: UInt32, at offset: Int, ordering: StoreOrdering) {
        region.store32(value, at: offset, ordering: ordering)
    }
    @inlinable public func load8(at offset: Int, ordering: LoadOrdering) -> UInt8 {
        region.load8(at: offset, ordering: ordering)
    }
    @inlinable public func store8(_ value: UInt8, at offset: Int, ordering: StoreOrdering) {
        region.store8(value, at: offset, ordering: ordering)
    }
    @inlinable public func copyBytes(from offset: Int, into destination: UnsafeMutableRawBufferPointer) {
        region.copyBytes(from: offset, into: destination)
    }
    @inlinable public func copyBytes(to offset: Int, from source: UnsafeRawBufferPointer) {
        region.copyBytes(to: offset, from: source)
    }
}

/// A full (sequentially consistent) fence: orders earlier stores before later
/// loads, which acquire/release alone do not. Needed by "set my sleeping flag,
/// then re-check the ring" notification-suppression protocols.
@inlinable
public func fullMemoryFence() {
    atomicMemoryFence(ordering: .sequentiallyConsistent)
}
