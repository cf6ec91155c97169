//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import DequeModule
import XenABI
import XenstoreWire

/// A connection's queue of messages waiting to be written, for the I/O shells.
///
/// The engine returns `.send` effects; a shell appends each to the target connection's
/// queue and writes from its head. The queue applies cxenstored's output rules:
///
/// - Replies are never dropped.
/// - A WATCH_EVENT identical (same payload) to one already queued and **not yet started** is
///   dropped ("coalesced"). Events on special `@` paths are never coalesced.
/// - At most ``maxWatchEvents`` watch events are held; further ones are dropped and counted,
///   so a guest that never reads its ring cannot make the daemon grow without bound.
///
/// "Started" means taken out with ``dequeue()``: a shell dequeues a message when it begins to
/// write it, so a partially written event is no longer a coalescing candidate.
public struct OutboundQueue: Sendable {
    /// The cap on queued watch events.
    public let maxWatchEvents: Int
    /// Watch events dropped because an identical one was already waiting.
    public private(set) var coalescedWatchEvents = 0
    /// Watch events dropped because the cap was reached.
    public private(set) var droppedWatchEvents = 0

    private var messages: Deque<XenstoreMessage> = []
    private var pendingEvents: [[UInt8]: Int] = [:]
    private var queuedEvents = 0

    public init(maxWatchEvents: Int = 1024) {
        self.maxWatchEvents = maxWatchEvents
    }

    public var isEmpty: Bool { messages.isEmpty }
    public var count: Int { messages.count }
    /// The next message to write, without removing it.
    public var first: XenstoreMessage? { messages.first }

    /// Queues `message`. Returns false if it was a watch event and was dropped.
    @discardableResult
    public mutating func enqueue(_ message: XenstoreMessage) -> Bool {
        guard message.type == .watchEvent else {
            messages.append(message)
            return true
        }
        let special = message.payload.first == UInt8(ascii: "@")
        if !special, pendingEvents[message.payload] != nil {
            coalescedWatchEvents += 1
            return false
        }
        guard queuedEvents < maxWatchEvents else {
            droppedWatchEvents += 1
            return false
        }
        if !special { pendingEvents[message.payload, default: 0] += 1 }
        queuedEvents += 1
        messages.append(message)
        return true
    }

    /// Takes the next message to write.
    public mutating func dequeue() -> XenstoreMessage? {
        guard let message = messages.popFirst() else { return nil }
        if message.type == .watchEvent {
            queuedEvents -= 1
            if let count = pendingEvents[message.payload] {
                pendingEvents[message.payload] = count > 1 ? count - 1 : nil
            }
        }
        return message
    }

    /// Empties the queue (for example when a ring is reset); counters are kept.
    public mutating func removeAll() {
        messages.removeAll()
        pendingEvents.removeAll()
        queuedEvents = 0
    }
}
