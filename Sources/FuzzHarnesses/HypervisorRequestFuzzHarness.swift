//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenSim

/// The simulated hypervisor's control socket as a guest sees it: arbitrary
/// SEQPACKET datagrams (framing flag, JSON, any length) reassembled and decoded
/// exactly as the daemon does before it handles a request.
///
/// Input: repeated `[length: u16 LE][bytes]`, each one datagram.
///
/// Checked: nothing traps, whatever the flags, lengths and JSON; a message over
/// the guest limit is refused, not buffered.
public enum HypervisorRequestFuzzHarness {
    public static func run(_ data: UnsafeRawBufferPointer) {
        var packets: [[UInt8]] = []
        var offset = 0
        while offset + 2 <= data.count {
            let length = Int(data[offset]) | Int(data[offset + 1]) << 8
            offset += 2
            let end = min(data.count, offset + length)
            packets.append(Array(data[offset..<end]))
            offset = end
        }
        let outcome = SimRequestDecoder.decode(packets: packets)
        precondition(outcome.requests + outcome.dropped <= packets.count)
    }
}
