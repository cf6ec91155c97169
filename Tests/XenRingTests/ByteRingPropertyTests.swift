//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import PropertyBased
import Testing
import XenABI
import XenMemory
import XenRing

/// Sets every index of a fresh console page to `start`, so the stream begins
/// wherever the test wants it (for example just below 2^32).
private func consolePage(startingAt start: UInt32) -> ConsoleRing<HeapPage> {
    let page = HeapPage()
    for offset in [3072, 3076, 3080, 3084] { page.store32(start, at: offset, ordering: .relaxed) }
    return ConsoleRing(memory: page)
}

private func pattern(_ range: Range<Int>) -> [UInt8] { range.map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) } }

@Suite("ByteRing properties")
struct ByteRingPropertyTests {
    /// A random sequence of writes, peeks and reads, run against an array model:
    /// the bytes read are exactly the bytes written, in order, whatever the start
    /// index (including just below 2^32) and whatever the chunk sizes.
    @Test func interleavedOperationsMatchModel() async {
        let operation = Gen.int(in: 0...3).map { $0 }
        await propertyCheck(
            count: 300,
            input: Gen.uint32(in: UInt32.max - 4096...UInt32.max).map { $0 },
            Gen.int(in: 0...2100).array(of: 1...60),
            operation.array(of: 60)
        ) { start, amounts, kinds in
            let ring = consolePage(startingAt: start)
            let writer = ring.frontend.output
            let reader = ring.backend.input
            var model: [UInt8] = []
            var produced = 0
            var consumed: [UInt8] = []
            for (amount, kind) in zip(amounts, kinds) {
                switch kind {
                case 0, 1:  // write
                    let chunk = pattern(produced..<produced + amount)
                    let written = try! writer.write(chunk)
                    #expect(written == min(amount, 2048 - model.count))
                    model += chunk.prefix(written)
                    produced += written
                case 2:  // peek, then consume part of it later
                    let peeked = try! reader.peek(maxCount: amount)
                    #expect(peeked == Array(model.prefix(amount)))
                    #expect(try! reader.available() == model.count)
                default:  // read
                    let bytes = try! reader.read(maxCount: amount)
                    #expect(bytes == Array(model.prefix(amount)))
                    model.removeFirst(bytes.count)
                    consumed += bytes
                }
                #expect(try! writer.freeSpace() == 2048 - model.count)
            }
            #expect(consumed == pattern(0..<consumed.count))
        }
    }

    /// Every write chunk size and every read chunk size from 1 to the ring size
    /// moves a stream three ring-lengths long through the ring across the 2^32 wrap.
    @Test(arguments: [ConsoleRingLayout.frontToBack, ConsoleRingLayout.backToFront])
    func everyChunkSize(direction: RingDirection) {
        let size = Int(direction.size)
        let total = size * 3
        let stream = pattern(0..<total)
        for chunk in 1...size {
            let page = HeapPage()
            let start = UInt32.max &- UInt32(size / 2)
            page.store32(start, at: direction.consumerOffset, ordering: .relaxed)
            page.store32(start, at: direction.producerOffset, ordering: .relaxed)
            let writer = RingWriter(memory: page, direction: direction)
            let reader = RingReader(memory: page, direction: direction)
            // The reader uses a different chunk size, so partial reads and writes interleave.
            let readChunk = size + 1 - chunk
            var sent = 0
            var received: [UInt8] = []
            received.reserveCapacity(total)
            while received.count < total {
                if sent < total {
                    sent += try! writer.write(stream[sent..<min(sent + chunk, total)])
                }
                received += try! reader.read(maxCount: readChunk)
            }
            #expect(received == stream, "write chunk \(chunk), read chunk \(readChunk)")
            #expect(page.load32(at: direction.producerOffset, ordering: .relaxed) == start &+ UInt32(total))
        }
    }

    /// Peeking never moves an index; consuming moves only the consumer index.
    @Test func peekDoesNotConsume() async {
        await propertyCheck(input: Gen.uint32(), Gen.int(in: 1...2048)) { start, count in
            let ring = consolePage(startingAt: start)
            let bytes = pattern(0..<count)
            #expect(try! ring.frontend.output.write(bytes) == count)
            let before = ring.memory.bytes(at: 3072, count: 16)
            #expect(try! ring.backend.input.peek(maxCount: count) == bytes)
            #expect(try! ring.backend.input.peek(maxCount: count) == bytes)
            #expect(ring.memory.bytes(at: 3072, count: 16) == before)
            var tail = [UInt8](repeating: 0, count: count)
            let skipped = count / 2
            let got = tail.withUnsafeMutableBytes { try! ring.backend.input.peek(into: $0, skipping: skipped) }
            #expect(Array(tail.prefix(got)) == Array(bytes[skipped...]))
            try! ring.backend.input.consume(count)
            #expect(ring.memory.load32(at: 3080, ordering: .relaxed) == start &+ UInt32(count))
            #expect(ring.memory.load32(at: 3084, ordering: .relaxed) == start &+ UInt32(count))
        }
    }

    /// Any index pair with `prod - cons > size` — including jumps by 2^31 — is a
    /// typed error for both ends, never a trap; the page is left untouched.
    @Test func corruptedIndicesAreTypedErrors() async {
        await propertyCheck(count: 500, input: Gen.uint32(), Gen.uint32(in: 2049...UInt32.max)) { cons, excess in
            let page = HeapPage()
            let prod = cons &+ excess
            page.store32(cons, at: ConsoleInterface.outConsOffset, ordering: .relaxed)
            page.store32(prod, at: ConsoleInterface.outProdOffset, ordering: .relaxed)
            let ring = ConsoleRing(memory: page)
            let before = page.bytes(at: 0, count: 4096)
            let expected = RingError.invalidIndices(producer: prod, consumer: cons, size: 2048)
            #expect(throws: expected) { try ring.backend.input.available() }
            #expect(throws: expected) { try ring.backend.input.peek(maxCount: 10) }
            #expect(throws: expected) { try ring.backend.input.consume(0) }
            #expect(throws: expected) { try ring.frontend.output.write([1, 2, 3]) }
            #expect(throws: expected) { try ring.frontend.output.freeSpace() }
            #expect(page.bytes(at: 0, count: 4096) == before)
        }
    }

    @Test func jumpBy2To31IsInvalid() {
        let ring = consolePage(startingAt: 5)
        ring.memory.store32(5 &+ (1 << 31), at: ConsoleInterface.inProdOffset, ordering: .relaxed)
        #expect(throws: RingError.self) { try ring.frontend.input.read(maxCount: 1) }
        ring.memory.store32(5 &- (1 << 31), at: ConsoleInterface.inProdOffset, ordering: .relaxed)
        #expect(throws: RingError.self) { try ring.backend.output.write([0]) }
    }

    @Test func consumingMoreThanAvailableIsAnError() throws {
        let ring = consolePage(startingAt: 0)
        _ = try ring.frontend.output.write([1, 2, 3])
        #expect(throws: RingError.consumeBeyondAvailable(requested: 4, available: 3)) {
            try ring.backend.input.consume(4)
        }
        try ring.backend.input.consume(3)
        #expect(try ring.backend.input.available() == 0)
    }

    /// A full ring accepts nothing more, and a ring that is exactly full is valid.
    @Test func fullRingAcceptsNothing() throws {
        let ring = consolePage(startingAt: UInt32.max - 10)
        #expect(try ring.frontend.output.write(pattern(0..<5000)) == 2048)
        #expect(try ring.frontend.output.write([1]) == 0)
        #expect(try ring.backend.input.available() == 2048)
        #expect(try ring.backend.input.read(maxCount: 5000) == pattern(0..<2048))
    }
}

@Suite("Ring layouts and views")
struct RingViewTests {
    @Test func backendInputIsFrontendOutput() throws {
        let console = ConsoleRing(memory: HeapPage())
        #expect(console.backend.input.direction == console.frontend.output.direction)
        #expect(console.backend.output.direction == console.frontend.input.direction)
        #expect(console.frontend.output.direction.dataOffset == ConsoleInterface.outOffset)
        // Keyboard input: the backend writes `in`, the guest reads it.
        _ = try console.backend.output.write(Array("ls\n".utf8))
        #expect(console.memory.bytes(at: 0, count: 3) == Array("ls\n".utf8))
        #expect(console.memory.load32(at: ConsoleInterface.inProdOffset, ordering: .relaxed) == 3)
        #expect(try console.frontend.input.read(maxCount: 10) == Array("ls\n".utf8))
        #expect(console.memory.load32(at: ConsoleInterface.inConsOffset, ordering: .relaxed) == 3)
    }

    @Test func xenstoreRingUsesReqAndRsp() throws {
        let ring = XenstoreRing(memory: HeapPage())
        _ = try ring.frontend.output.write([9, 8, 7])
        #expect(ring.memory.bytes(at: XenstoreInterface.reqOffset, count: 3) == [9, 8, 7])
        #expect(ring.memory.load32(at: XenstoreInterface.reqProdOffset, ordering: .relaxed) == 3)
        _ = try ring.backend.output.write([1])
        #expect(ring.memory.bytes(at: XenstoreInterface.rspOffset, count: 1) == [1])
        #expect(ring.memory.load32(at: XenstoreInterface.rspProdOffset, ordering: .relaxed) == 1)
        #expect(try ring.backend.input.read(maxCount: 1024) == [9, 8, 7])
        #expect(ring.memory.load32(at: XenstoreInterface.reqConsOffset, ordering: .relaxed) == 3)
    }

    @Test func connectionFlagLivesAtOffset3088() {
        let ring = ConsoleRing(memory: HeapPage())
        #expect(ring.connection == .connected, "a zeroed page reads as connected")
        ring.connection = .disconnected
        #expect(ring.memory.load8(at: 3088, ordering: .relaxed) == 1)
        #expect(ring.connection.isDisconnected)
        ring.memory.store8(7, at: 3088, ordering: .relaxed)
        #expect(!ring.connection.isDisconnected, "only the value 1 means disconnected")
        #expect(ring.memory.bytes(at: 3072, count: 16) == [UInt8](repeating: 0, count: 16))
    }
}

/// xenstored's receiver takes whatever the ring holds (Linux notifies only when it
/// finds the ring empty), and yields exactly the messages written, however split.
@Suite("XenstoreRingReceiver")
struct XenstoreRingReceiverTests {
    static func message(_ payload: Int, id: UInt32) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 16)
        bytes[0] = 2  // READ
        bytes[4] = UInt8(truncatingIfNeeded: id)
        bytes[12] = UInt8(truncatingIfNeeded: payload)
        bytes[13] = UInt8(truncatingIfNeeded: payload >> 8)
        return bytes + (0..<payload).map { UInt8(truncatingIfNeeded: $0 &+ Int(id)) }
    }

    @Test func aHeaderAloneIsTakenAndTheRestCompletesIt() throws {
        let page = HeapPage()
        let ring = XenstoreRing(memory: page)
        var receiver = XenstoreRingReceiver()
        let whole = Self.message(40, id: 1)
        _ = try ring.frontend.output.write(whole.prefix(16))
        let first = try receiver.peek(from: ring.backend.input)
        #expect(first == .partial(prefix: Array(whole.prefix(16)), taking: 16))
        #expect(try ring.backend.input.available() == 16, "peek consumes nothing")
        try receiver.take(first, from: ring.backend.input)
        #expect(try ring.backend.input.available() == 0, "the header left the ring")
        #expect(receiver.pending == Array(whole.prefix(16)))
        _ = try ring.frontend.output.write(whole.dropFirst(16))
        let second = try receiver.peek(from: ring.backend.input)
        #expect(second == .message(whole, taking: 40))
        try receiver.take(second, from: ring.backend.input)
        #expect(receiver.pending.isEmpty)
    }

    @Test func messagesLongerThanTheRingArriveWhole() throws {
        let page = HeapPage()
        let ring = XenstoreRing(memory: page)
        var receiver = XenstoreRingReceiver()
        let stream = Self.message(4096, id: 1) + Self.message(0, id: 2) + Self.message(3000, id: 3)
        var written = 0
        var taken: [[UInt8]] = []
        while taken.count < 3 {
            written += try ring.frontend.output.write(stream[written...].prefix(700))
            while true {
                let step = try receiver.peek(from: ring.backend.input)
                if case .none = step { break }
                if case .message(let whole, _) = step { taken.append(whole) }
                try receiver.take(step, from: ring.backend.input)
            }
        }
        #expect(taken == [Self.message(4096, id: 1), Self.message(0, id: 2), Self.message(3000, id: 3)])
    }

    @Test func anOversizeHeaderIsReportedNotTaken() throws {
        let page = HeapPage()
        let ring = XenstoreRing(memory: page)
        var header = Self.message(0, id: 1)
        header[13] = 0x10  // 4096 + 1 bytes announced
        header[12] = 1
        _ = try ring.frontend.output.write(header)
        let step = try XenstoreRingReceiver().peek(from: ring.backend.input)
        #expect(step == .oversize(header: header))
    }
}
