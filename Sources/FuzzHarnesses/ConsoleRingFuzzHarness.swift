//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import XenABI
import XenMemory
import XenRing

/// consoled's side of a console ring whose every byte the guest controls: the
/// data, the four indices and the `connection` flag, rewritten between backend
/// steps.
///
/// Input: repeated `[op][a][b]…`. Ops (low 2 bits of `op`):
/// - 0: the guest stores `a…` at offset `b·16` of the page (up to 32 bytes);
/// - 1: the guest stores a 32-bit index (`a` picks which, the next 4 bytes the value);
/// - 2: the backend services the ring once, as consoled does: inspect the
///   snapshot, plan, peek, commit, consume; `a` decides whether a client is
///   attached and how much it takes;
/// - 3: the backend pushes `a` bytes of input into the `in` ring.
///
/// Checked: nothing traps; the backend never consumes more than it peeked or
/// than the plan granted; a quarantined ring is never touched again.
public enum ConsoleRingFuzzHarness {
    public static func run(_ data: UnsafeRawBufferPointer) {
        let page = HeapPage()
        let ring = ConsoleRing(memory: page)
        var pump = ConsolePump(
            ConsolePump.Configuration(
                kind: data.first.map { $0 & 1 == 0 } ?? true ? .primary : .channel,
                logging: true
            ),
            now: 0
        )
        var now: UInt64 = 0
        var offset = 1
        func byte() -> UInt8? {
            guard offset < data.count else { return nil }
            defer { offset += 1 }
            return data[offset]
        }
        while let op = byte() {
            now &+= 1_000_000
            switch op & 3 {
            case 0:
                guard let count = byte(), let at = byte() else { return }
                var bytes: [UInt8] = []
                for _ in 0..<Int(count % 33) { bytes.append(byte() ?? 0) }
                let position = Int(at) * 16
                if position + bytes.count <= XenPage.size { page.write(bytes, at: position) }
            case 1:
                guard let which = byte() else { return }
                var value: UInt32 = 0
                for shift in 0..<4 { value |= UInt32(byte() ?? 0) << (8 * shift) }
                let offsets = [
                    ConsoleInterface.inConsOffset, ConsoleInterface.inProdOffset, ConsoleInterface.outConsOffset,
                    ConsoleInterface.outProdOffset,
                ]
                if which & 4 != 0 {
                    page.store8(
                        UInt8(truncatingIfNeeded: value),
                        at: ConsoleInterface.connectionOffset,
                        ordering: .releasing
                    )
                } else {
                    page.store32(value, at: offsets[Int(which & 3)], ordering: .releasing)
                }
            case 2:
                guard let client = byte() else { return }
                service(ring: ring, page: page, pump: &pump, client: client, now: now)
            default:
                guard let count = byte() else { return }
                guard !pump.isQuarantined else { continue }
                let free = try? ring.backend.output.freeSpace()
                let planned = pump.planInput(freeSpace: free, clientAvailable: Int(count))
                precondition(planned <= max(0, free ?? 0), "planned more input than the ring holds")
                if planned > 0, let written = try? ring.backend.output.write([UInt8](repeating: 0x41, count: planned)) {
                    precondition(written <= planned)
                    pump.commitInput(count: written, now: now)
                }
            }
        }
    }

    private static func service(
        ring: ConsoleRing<HeapPage>,
        page: HeapPage,
        pump: inout ConsolePump,
        client: UInt8,
        now: UInt64
    ) {
        guard !pump.isQuarantined else { return }
        let snapshot = RingSnapshot(
            outProd: page.load32(at: ConsoleInterface.outProdOffset, ordering: .acquiring),
            outCons: page.load32(at: ConsoleInterface.outConsOffset, ordering: .acquiring),
            inProd: page.load32(at: ConsoleInterface.inProdOffset, ordering: .acquiring),
            inCons: page.load32(at: ConsoleInterface.inConsOffset, ordering: .acquiring),
            connection: page.load8(at: ConsoleInterface.connectionOffset, ordering: .acquiring)
        )
        switch pump.inspect(snapshot, now: now) {
        case .ok: break
        case .restoreFlag(let value):
            ring.connection = value
            pump.backendWroteFlag(value)
        case .quarantine(let reason):
            pump.quarantine(reason: reason)
            return
        }
        let sink: SinkReadiness =
            switch client & 3 {
            case 0: .waitingForClient
            case 1: .connected(canAccept: Int(client >> 2))
            case 2: .connected(canAccept: .max)
            default: .none
            }
        let readable = Int(snapshot.outProd &- snapshot.outCons)
        let plan = pump.planOutput(readable: readable, sink: sink, now: now)
        guard plan.count > 0 else { return }
        precondition(plan.count <= ConsoleInterface.outSize, "planned more than a ring holds")
        guard let bytes = try? ring.backend.input.peek(maxCount: plan.count) else {
            pump.quarantine(reason: "invalid ring indices")
            return
        }
        precondition(bytes.count <= plan.count, "peeked more than planned")
        let delivered = plan.sendToClient ? Array(bytes.prefix(Int(client >> 2) + 1)) : bytes
        let count = pump.commitOutput(delivered, plan: plan, now: now)
        precondition(count <= bytes.count, "committed more than was read")
        if count > 0 {
            do {
                try ring.backend.input.consume(count)
            } catch {
                pump.quarantine(reason: "\(error)")
            }
        }
    }
}
