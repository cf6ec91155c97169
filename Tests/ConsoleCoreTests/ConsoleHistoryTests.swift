//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import PropertyBased
import Testing

@testable import ConsoleCore

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite("ConsoleHistory and GuestBootHistory")
struct ConsoleHistoryTests {
    @Test func documentedWorkedExample() {
        var history = ConsoleHistory(capacity: 8)
        #expect(history.append(bytes("abcdef")) == 0)
        #expect(history.append(bytes("ghijk")) == 3)
        #expect(history.retained == bytes("defghijk"))
        #expect(history.droppedBytes == 3)
        #expect(history.replay() == bytes("\r\n[conch: 3 bytes of earlier output dropped]\r\ndefghijk"))
    }

    @Test func defaultIs64KiBAndReplayHasNoMarkerWithoutDrops() {
        var history = ConsoleHistory()
        #expect(history.capacity == 65536)
        history.append(bytes("login: "))
        #expect(history.replay() == bytes("login: "))
        #expect(history.droppedBytes == 0)
        #expect(history.replay() == bytes("login: "), "replaying does not consume the window")
    }

    @Test func oneAppendLargerThanTheCapacityKeepsItsTail() {
        var history = ConsoleHistory(capacity: 4)
        history.append(bytes("xy"))
        #expect(history.append(bytes("0123456789")) == 8)
        #expect(history.retained == bytes("6789"))
        #expect(history.droppedBytes == 8)
    }

    @Test func zeroCapacityDropsAndCountsEverything() {
        var history = ConsoleHistory(capacity: 0)
        #expect(history.append(bytes("abc")) == 3)
        #expect(history.retained.isEmpty)
        #expect(history.replay() == ConsoleHistory.dropMarker(droppedBytes: 3))
        #expect(ConsoleHistory(capacity: -5).capacity == 0)
    }

    /// Drop accounting sums to the input: retained + dropped = appended, the sum of
    /// per-call drops is the total, and what is retained is the input's suffix.
    @Test func dropAccountingSumsToTheInput() async {
        await propertyCheck(
            count: 300,
            input: Gen.int(in: 0...64),
            Gen.uint8().array(of: 0...40).array(of: 0...30)
        ) { capacity, chunks in
            var history = ConsoleHistory(capacity: capacity)
            var everything: [UInt8] = []
            var dropped = 0
            for chunk in chunks {
                dropped += history.append(chunk)
                everything += chunk
                #expect(history.count == min(capacity, everything.count))
                #expect(history.retained == Array(everything.suffix(capacity)))
            }
            #expect(UInt64(dropped) == history.droppedBytes)
            #expect(history.count + dropped == everything.count)
            #expect(history.totalAppended == UInt64(everything.count))
            let replay = history.replay()
            if dropped > 0 {
                #expect(replay == ConsoleHistory.dropMarker(droppedBytes: UInt64(dropped)) + history.retained)
            } else {
                #expect(replay == everything)
            }
        }
    }

    @Test func circularBufferRemoveOldestAcrossTheWrap() {
        var buffer = ByteHistoryBuffer(capacity: 5)
        _ = buffer.append(bytes("abcd"))
        _ = buffer.append(bytes("ef"))  // wraps: holds "bcdef"
        buffer.removeOldest(2)
        #expect(buffer.bytes == bytes("def"))
        _ = buffer.append(bytes("ghi"))
        #expect(buffer.bytes == bytes("efghi"))
        buffer.removeOldest(99)
        #expect(buffer.bytes.isEmpty)
        buffer.removeOldest(-1)
        #expect(buffer.count == 0)
    }

    @Test func bootHistoryMarkerNamesRetainedAndDropped() {
        var boot = GuestBootHistory(capacity: 4)
        #expect(boot.isEmpty)
        boot.record(bytes("hello"))
        #expect(boot.retained == bytes("ello"))
        #expect(boot.droppedBytes == 1)
        #expect(
            boot.replayMarker()
                == bytes(
                    "[conch: replaying 4 bytes written while the console was disconnected; 1 earlier bytes dropped]\r\n"
                )
        )
        var clean = GuestBootHistory()
        #expect(clean.capacity == 65536)
        clean.record(bytes("boot\n"))
        #expect(
            clean.replayMarker() == bytes("[conch: replaying 5 bytes written while the console was disconnected]\r\n")
        )
    }
}
