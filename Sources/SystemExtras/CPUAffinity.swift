//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CConchShims
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Which CPUs the calling thread runs on. A process spawned from a thread
/// inherits that thread's set, so pinning the spawning thread places the child.
///
/// For benchmarks that must not depend on where the scheduler happens to put two
/// processes (see ``InterleavedPairs`` in ConchBench).
public enum CPUAffinity {
    /// The CPUs the calling thread may run on, lowest first.
    public static func current() throws(Errno) -> [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        // SAFETY: the buffer holds `cpus.count` ints and the shim writes at most that many.
        let count = cpus.withUnsafeMutableBufferPointer { cconch_thread_cpus($0.baseAddress, Int32($0.count)) }
        guard count >= 0 else { throw Errno(rawValue: errno) }
        return cpus.prefix(Int(count)).map { Int($0) }
    }

    /// Restricts the calling thread to `cpus`.
    public static func pin(to cpus: [Int]) throws(Errno) {
        let values = cpus.map { Int32(truncatingIfNeeded: $0) }
        // SAFETY: the shim reads exactly `values.count` ints from the buffer.
        let result = values.withUnsafeBufferPointer { cconch_pin_thread($0.baseAddress, Int32($0.count)) }
        guard result == 0 else { throw Errno(rawValue: errno) }
    }

    /// Runs `body` with the calling thread pinned to `cpus`, then restores the set
    /// it had. Synchronous on purpose: an `await` could resume on another thread.
    public static func withPinned<T>(to cpus: [Int], _ body: () throws -> T) throws -> T {
        let previous = try current()
        try pin(to: cpus)
        defer { try? pin(to: previous) }
        return try body()
    }
}
