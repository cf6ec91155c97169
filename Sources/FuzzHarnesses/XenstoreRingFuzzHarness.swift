//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenMemory
import XenRing
import XenstoreCore
import XenstoreWire

/// xenstored's side of a guest's xenstore ring, where the guest controls every
/// byte of the page: requests and their framing, all four indices, the
/// `connection` field. What the server takes out goes through the decoder and the
/// engine, as an unprivileged domain's requests; the replies go back into `rsp`.
///
/// Input: repeated `[op]…`. Ops (low 2 bits):
/// - 0: the guest writes `[n]` bytes into `req` through its own (honest) view;
/// - 1: the guest stores a 32-bit value over one of the index or control fields;
/// - 2: the server services the ring: take messages, handle them, write replies;
/// - 3: the guest consumes `[n]` bytes of `rsp`.
///
/// Checked: nothing traps; every message taken is whole and exactly as long as
/// its header says; what is held between steps is less than one message; no
/// payload over 4096 reaches the engine; a ring error (impossible indices) stops
/// the connection, as the server does.
public enum XenstoreRingFuzzHarness {
    public static func run(_ data: UnsafeRawBufferPointer) {
        let page = HeapPage()
        let ring = XenstoreRing(memory: page)
        var receiver = XenstoreRingReceiver()
        var decoder = XenstoreDecoder()
        var engine = XenstoreEngine()
        let guest = ConnectionID(1)
        engine.connect(guest, domid: DomID(5), privileged: false, persistent: true)
        var pending: [UInt8] = []
        var failed = false
        var offset = 0
        func byte() -> UInt8? {
            guard offset < data.count else { return nil }
            defer { offset += 1 }
            return data[offset]
        }
        while let op = byte(), !failed {
            switch op & 3 {
            case 0:
                guard let count = byte() else { return }
                var bytes: [UInt8] = []
                for _ in 0..<Int(count) { bytes.append(byte() ?? 0) }
                _ = try? ring.frontend.output.write(bytes)
            case 1:
                guard let which = byte() else { return }
                var value: UInt32 = 0
                for shift in 0..<4 { value |= UInt32(byte() ?? 0) << (8 * shift) }
                let fields = [
                    XenstoreInterface.reqConsOffset, XenstoreInterface.reqProdOffset, XenstoreInterface.rspConsOffset,
                    XenstoreInterface.rspProdOffset, XenstoreInterface.connectionOffset, XenstoreInterface.errorOffset,
                ]
                page.store32(value, at: fields[Int(which) % fields.count], ordering: .releasing)
            case 2:
                do {
                    var steps = 0
                    while steps < 64 {
                        steps += 1
                        let step = try receiver.peek(from: ring.backend.input)
                        var bytes: [UInt8] = []
                        switch step {
                        case .none:
                            steps = 64
                            continue
                        case .message(let whole, let taking):
                            precondition(whole.count >= XenstoreHeader.size, "a message shorter than its header")
                            let announced =
                                Int(whole[12]) | Int(whole[13]) << 8 | Int(whole[14]) << 16
                                | Int(whole[15]) << 24
                            precondition(
                                whole.count == XenstoreHeader.size + announced,
                                "a message of the wrong length"
                            )
                            precondition(taking > 0 && taking <= XenstoreInterface.ringSize)
                            bytes = whole
                        case .partial(let prefix, let taking):
                            precondition(taking > 0 && taking <= XenstoreInterface.ringSize)
                            precondition(prefix.count < XenstoreHeader.size + XenstoreInterface.payloadMax)
                        case .oversize:
                            failed = true  // the server drops the ring (error = PROTO)
                            steps = 64
                            continue
                        }
                        try receiver.take(step, from: ring.backend.input)
                        for message in decoder.feed(bytes) {
                            precondition(message.payload.count <= XenstoreInterface.payloadMax)
                            for case .send(_, let reply) in engine.handle(message, from: guest) {
                                pending += reply.encoded()
                            }
                        }
                        if case .failed = decoder.state { failed = true }
                    }
                    let written = try ring.backend.output.write(pending)
                    precondition(written <= pending.count)
                    pending.removeFirst(written)
                } catch {
                    failed = true  // impossible indices: the server abandons the ring (error = RINGIDX)
                }
            default:
                guard let count = byte() else { return }
                _ = try? ring.frontend.input.read(maxCount: Int(count))
            }
            // The server's own queue is bounded: a guest that never reads is cut off.
            if pending.count > 64 * 1024 { failed = true }
        }
    }
}
