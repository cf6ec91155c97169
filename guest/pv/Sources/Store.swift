//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenRing
import XenstoreWire

/// Just enough of a xenstore client, over the guest's xenstore ring, to read and
/// write nodes under the domain's home: Conch's `XenstoreWire` frames the
/// messages and `XenRing` moves the bytes, as in the simulator's guest.
struct Store {
    let ring: XenstoreRing<GuestPage>
    let port: UInt32
    var nextID: UInt32 = 1
    var decoder = XenstoreDecoder()

    init(page: GuestPage, port: UInt32) {
        ring = XenstoreRing(memory: page)
        self.port = port
    }

    /// XS_WRITE of `value` at `path` (relative: under the domain's home).
    mutating func write(_ path: [UInt8], _ value: [UInt8]) -> Bool {
        request(.write, path + [0] + value)?.type == .write
    }

    /// XS_READ of `path`; nil if it fails.
    mutating func read(_ path: [UInt8]) -> [UInt8]? {
        guard let reply = request(.read, path + [0]), reply.type == .read else { return nil }
        return reply.payload
    }

    /// Sends one request and waits (at most ~10 s) for its reply.
    mutating func request(_ type: XenstoreMessageType, _ payload: [UInt8]) -> XenstoreMessage? {
        let id = nextID
        nextID &+= 1
        let bytes = XenstoreMessage(type: type, reqID: id, payload: payload).encoded()
        guard writeAll(bytes, to: ring.frontend.output, port: port, rounds: 1000) else { return nil }
        var rounds = 0
        while rounds < 1000 {
            Xen.clearPending(port)
            if let input = try? ring.frontend.input.read(maxCount: 4096), !input.isEmpty {
                Xen.notify(port)
                for message in decoder.feed(input) where message.reqID == id { return message }
                continue
            }
            rounds += 1
            Xen.wait(ports: [port], nanoseconds: 10_000_000)
        }
        return nil
    }
}
