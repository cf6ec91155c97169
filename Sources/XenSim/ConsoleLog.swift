//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// The hypervisor console ring (what `xl dmesg` reads): bounded, oldest bytes
/// dropped first, each guest line prefixed `(d<N>) ` as Xen does. Partial lines
/// are held per domain until their newline, so two guests' output never
/// interleaves inside a line.
struct ConsoleLog {
    let capacity: Int
    private(set) var bytes: [UInt8] = []
    /// Bytes dropped from the front since start (or the last clear).
    private(set) var dropped = 0
    private var partialLines: [DomID: [UInt8]] = [:]
    /// Longest partial line held before it is flushed anyway.
    let maxLine = 1024

    init(capacity: Int = 1 << 20) { self.capacity = capacity }

    mutating func write(_ data: some Sequence<UInt8>, from domid: DomID) {
        var line = partialLines[domid] ?? []
        for byte in data {
            // Xen drops non-printable characters from guest console output.
            if byte == UInt8(ascii: "\n") || line.count >= maxLine {
                append(prefix(domid) + line + [UInt8(ascii: "\n")])
                line.removeAll(keepingCapacity: true)
                if byte == UInt8(ascii: "\n") { continue }
            }
            if byte == UInt8(ascii: "\t") || (0x20...0x7e).contains(byte) { line.append(byte) }
        }
        partialLines[domid] = line
    }

    /// Flushes a domain's unterminated line (when it dies).
    mutating func flush(_ domid: DomID) {
        if let line = partialLines.removeValue(forKey: domid), !line.isEmpty {
            append(prefix(domid) + line + [UInt8(ascii: "\n")])
        }
    }

    mutating func clear() {
        bytes.removeAll()
        dropped = 0
    }

    private func prefix(_ domid: DomID) -> [UInt8] { Array("(d\(domid.rawValue)) ".utf8) }

    private mutating func append(_ line: [UInt8]) {
        bytes += line
        if bytes.count > capacity {
            let excess = bytes.count - capacity
            bytes.removeFirst(excess)
            dropped += excess
        }
    }
}
