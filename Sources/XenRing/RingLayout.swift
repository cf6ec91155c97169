//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// One direction of a Xen byte ring: a power-of-two data array and the two
/// free-running 32-bit indices that describe it, all at fixed page offsets.
///
/// Invariants of a healthy ring (all arithmetic modulo 2^32):
/// - `0 <= prod - cons <= size`: the bytes `cons ..< prod` are readable;
/// - byte `i` lives at `dataOffset + (i & (size - 1))`;
/// - only the producer stores `prod`, only the consumer stores `cons`.
/// A peer can break any of these at will; readers and writers check them on every
/// access and report ``RingError`` instead of trusting them.
public struct RingDirection: Hashable, Sendable {
    public let dataOffset: Int
    public let size: UInt32
    public let consumerOffset: Int
    public let producerOffset: Int

    public init(dataOffset: Int, size: UInt32, consumerOffset: Int, producerOffset: Int) {
        precondition(size > 0 && size & (size - 1) == 0, "ring size must be a power of two")
        self.dataOffset = dataOffset
        self.size = size
        self.consumerOffset = consumerOffset
        self.producerOffset = producerOffset
    }

    /// `idx & (size - 1)`: where a free-running index lands in the data array.
    @inlinable public func mask(_ index: UInt32) -> Int { Int(index & (size &- 1)) }
}

/// Where a ring protocol keeps its two directions inside the shared page.
/// Each ring supplies only offsets; the algorithm (``RingReader`` / ``RingWriter``)
/// is shared, as in mirage's `shared-memory-ring`.
public protocol RingLayout: Sendable {
    /// The direction the frontend (guest) produces and the backend consumes.
    static var frontToBack: RingDirection { get }
    /// The direction the backend produces and the frontend consumes.
    static var backToFront: RingDirection { get }
}

/// The PV console ring (`xen/include/public/io/console.h`): the guest writes `out`,
/// the backend writes `in`.
public enum ConsoleRingLayout: RingLayout {
    public static let frontToBack = RingDirection(
        dataOffset: ConsoleInterface.outOffset,
        size: UInt32(ConsoleInterface.outSize),
        consumerOffset: ConsoleInterface.outConsOffset,
        producerOffset: ConsoleInterface.outProdOffset
    )
    public static let backToFront = RingDirection(
        dataOffset: ConsoleInterface.inOffset,
        size: UInt32(ConsoleInterface.inSize),
        consumerOffset: ConsoleInterface.inConsOffset,
        producerOffset: ConsoleInterface.inProdOffset
    )
}

/// The xenstore ring (`xen/include/public/io/xs_wire.h`): the guest writes `req`,
/// xenstored writes `rsp`.
public enum XenstoreRingLayout: RingLayout {
    public static let frontToBack = RingDirection(
        dataOffset: XenstoreInterface.reqOffset,
        size: UInt32(XenstoreInterface.ringSize),
        consumerOffset: XenstoreInterface.reqConsOffset,
        producerOffset: XenstoreInterface.reqProdOffset
    )
    public static let backToFront = RingDirection(
        dataOffset: XenstoreInterface.rspOffset,
        size: UInt32(XenstoreInterface.ringSize),
        consumerOffset: XenstoreInterface.rspConsOffset,
        producerOffset: XenstoreInterface.rspProdOffset
    )
}
