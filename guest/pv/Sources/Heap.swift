//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

// The allocator Embedded Swift calls for classes and arrays: power-of-two size
// classes from 16 bytes to 1 MiB over the 8 MiB heap in entry.S's .bss, each
// class with a free list. Every block has a 16-byte header before it holding its
// class, so `free` knows where it goes. Simple and bounded: the kernel's working
// set (rings' copies, the boot history) is small and repeats.

@_silgen_name("conch_heap_start")
func conch_heap_start() -> UnsafeMutableRawPointer
@_silgen_name("conch_heap_end")
func conch_heap_end() -> UnsafeMutableRawPointer

enum Heap {
    static let smallestClass = 4  // 16 bytes
    static let largestClass = 20  // 1 MiB
    static let headerSize = 16
    nonisolated(unsafe) static var next: UnsafeMutableRawPointer?
    /// The free-list heads, one per class, at the start of the heap.
    nonisolated(unsafe) static var freeListStorage: UnsafeMutablePointer<UnsafeMutableRawPointer?>?

    static func sizeClass(_ size: Int) -> Int? {
        var shift = smallestClass
        while (1 << shift) < size {
            shift += 1
            if shift > largestClass { return nil }
        }
        return shift
    }

    static func allocate(size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        guard alignment <= 4096, let shift = sizeClass(max(size, 1)) else { return nil }
        if next == nil {
            next = conch_heap_start()
            // SAFETY: the first 256 bytes of the heap hold the free-list heads.
            let heads = next!.bindMemory(to: UnsafeMutableRawPointer?.self, capacity: 32)
            heads.initialize(repeating: nil, count: 32)
            freeListStorage = heads
            next = next! + 256
        }
        let heads = freeListStorage!
        // A freed block of this class, if its address suits the alignment.
        if let block = heads[shift], Int(bitPattern: block) % alignment == 0 {
            // SAFETY: a free block's first word is the next free block of its class.
            heads[shift] = block.load(as: UnsafeMutableRawPointer?.self)
            return block
        }
        let align = max(alignment, headerSize)
        let start = Int(bitPattern: next!) + headerSize
        let aligned = (start + align - 1) / align * align
        let end = aligned + (1 << shift)
        guard end <= Int(bitPattern: conch_heap_end()) else { return nil }
        let block = UnsafeMutableRawPointer(bitPattern: aligned)!
        // SAFETY: the header lies between the previous block's end and this block.
        (block - headerSize).storeBytes(of: shift, as: Int.self)
        next = UnsafeMutableRawPointer(bitPattern: end)
        return block
    }

    static func release(_ block: UnsafeMutableRawPointer) {
        // SAFETY: `block` came from `allocate`, so its header holds its class.
        let shift = (block - headerSize).load(as: Int.self)
        guard shift >= smallestClass && shift <= largestClass, let heads = freeListStorage else { return }
        block.storeBytes(of: heads[shift], as: UnsafeMutableRawPointer?.self)
        heads[shift] = block
    }
}

@_cdecl("conch_posix_memalign")
public func conchPosixMemalign(
    _ result: UnsafeMutablePointer<UnsafeMutableRawPointer?>,
    _ alignment: Int,
    _ size: Int
) -> Int32 {
    guard let block = Heap.allocate(size: size, alignment: alignment) else { return 12 }  // ENOMEM
    // SAFETY: the caller passes a valid place for the result.
    result.pointee = block
    return 0
}

@_cdecl("conch_free")
public func conchFree(_ pointer: UnsafeMutableRawPointer?) {
    if let pointer { Heap.release(pointer) }
}

/// Seeds for the standard library's hashing. Nothing here defends against
/// hash flooding (the kernel hashes only its own constants), so the TSC will do.
@_cdecl("conch_random_bytes")
public func conchRandomBytes(_ buffer: UnsafeMutableRawPointer, _ count: Int) {
    var state = conch_rdtsc() | 1
    // SAFETY: the caller hands us `count` writable bytes at `buffer`.
    for index in 0..<count {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        buffer.storeBytes(of: UInt8(truncatingIfNeeded: state), toByteOffset: index, as: UInt8.self)
    }
}
