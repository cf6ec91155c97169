//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import XenABI
import XenstoreCore
import XenstoreWire

@Suite("Outbound queue")
struct OutboundQueueTests {
    func event(_ path: String, _ token: String = "t") -> XenstoreMessage {
        .watchEvent(path: path, token: Array(token.utf8))
    }

    @Test func coalescesIdenticalUnsentEvents() {
        var queue = OutboundQueue()
        #expect(push(&queue, event("/a")))
        #expect(push(&queue, event("/b")))
        #expect(!push(&queue, event("/a")))
        #expect(push(&queue, event("/a", "other-token")))
        #expect(queue.count == 3)
        #expect(queue.coalescedWatchEvents == 1)
        // Once started (dequeued), an event is no longer a coalescing candidate.
        #expect(queue.dequeue() == event("/a"))
        #expect(push(&queue, event("/a")))
        #expect(queue.count == 3)
    }

    @Test func specialEventsAndRepliesAreNeverCoalesced() {
        var queue = OutboundQueue()
        #expect(push(&queue, event("@releaseDomain")))
        #expect(push(&queue, event("@releaseDomain")))
        let reply = XenstoreMessage(type: .read, reqID: 1, payload: "v")
        #expect(push(&queue, reply))
        #expect(push(&queue, reply))
        #expect(queue.count == 4)
        #expect(queue.coalescedWatchEvents == 0)
    }

    @Test func boundedWithDropCount() {
        var queue = OutboundQueue(maxWatchEvents: 3)
        for index in 0..<5 {
            queue.enqueue(event("/e\(index)"))
        }
        #expect(queue.count == 3)
        #expect(queue.droppedWatchEvents == 2)
        // Replies still go in.
        #expect(push(&queue, XenstoreMessage(type: .write, payload: "OK\0")))
        _ = queue.dequeue()
        #expect(push(&queue, event("/e9")))
        #expect(!push(&queue, event("/e10")))
        #expect(queue.droppedWatchEvents == 3)
        var order: [XenstoreMessage] = []
        while let message = queue.dequeue() { order.append(message) }
        #expect(order == [event("/e1"), event("/e2"), XenstoreMessage(type: .write, payload: "OK\0"), event("/e9")])
        #expect(queue.isEmpty)
    }
}

/// `#expect` cannot call a mutating method on its operand directly.
private func push(_ queue: inout OutboundQueue, _ message: XenstoreMessage) -> Bool {
    queue.enqueue(message)
}
