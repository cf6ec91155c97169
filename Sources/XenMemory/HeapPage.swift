//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// Page-aligned, zero-filled memory on the heap: the in-process ``SharedMemory``
/// used by unit tests and by anything that shares memory between threads only.
public final class HeapPage: RegionBackedMemory {
    public let region: RawMemoryRegion

    /// Allocates `byteCount` zeroed bytes aligned to 4096 (one Xen page by default).
    public init(byteCount: Int = 4096) {
        let base = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 4096)
        // SAFETY: freshly allocated `byteCount` bytes, initialised here before any use.
        base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        region = RawMemoryRegion(base: base, byteCount: byteCount)
    }

    deinit { region.base.deallocate() }
}
