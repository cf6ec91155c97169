//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import XenABI
import XenstoreWire

@testable import XenstoreCore

/// The connections every scenario uses.
enum C {
    /// A privileged Unix-socket client (dom0).
    static let d0 = ConnectionID(1)
    /// A second privileged socket client, used as an observer.
    static let obs = ConnectionID(2)
    /// Guest rings: unprivileged domains 1, 2 and 3.
    static let g1 = ConnectionID(11)
    static let g2 = ConnectionID(12)
    static let g3 = ConnectionID(13)

    static let all = [d0, obs, g1, g2, g3]
}

/// What a step's reply must be.
enum Expect: Sendable, CustomStringConvertible {
    case ok
    case error(XenstoreError)
    /// The exact reply payload (NULs written as `\0`).
    case payload(String)
    /// Any success reply; the payload is remembered as the step's result.
    case anySuccess

    var description: String {
        switch self {
        case .ok: "OK"
        case .error(let error): error.name
        case .payload(let payload): payload.debugDescription
        case .anySuccess: "success"
        }
    }
}

/// One WATCH_EVENT expected on a connection.
struct Event: Hashable, Sendable, CustomStringConvertible {
    let to: ConnectionID
    let path: String
    let token: String

    init(_ to: ConnectionID, _ path: String, _ token: String) {
        self.to = to
        self.path = path
        self.token = token
    }

    var description: String { "\(to):\(path)/\(token)" }
}

/// One row of a scenario table: who sends what, the expected reply, and (if given) exactly
/// which watch events the request fires, in order.
struct Step: Sendable, CustomStringConvertible {
    let conn: ConnectionID
    let type: XenstoreMessageType
    let payload: String
    let tx: UInt32
    let expect: Expect
    let events: [Event]?

    var description: String { "\(conn) \(type) \(payload.debugDescription) tx=\(tx) → \(expect)" }
}

func step(
    _ conn: ConnectionID,
    _ type: XenstoreMessageType,
    _ payload: String,
    tx: UInt32 = 0,
    _ expect: Expect,
    events: [Event]? = nil
) -> Step {
    Step(conn: conn, type: type, payload: payload, tx: tx, expect: expect, events: events)
}

/// An engine with the standard connections.
struct Harness {
    var engine: XenstoreEngine
    private var nextReqID: UInt32 = 100

    init(quotas: Quotas = .cxenstored417, features: XenstoreServerFeatures = []) {
        engine = XenstoreEngine(quotas: quotas, supportedFeatures: features)
        engine.connect(C.d0, domid: .dom0, privileged: true)
        engine.connect(C.obs, domid: .dom0, privileged: true)
        engine.connect(C.g1, domid: DomID(1), privileged: false)
        engine.connect(C.g2, domid: DomID(2), privileged: false)
        engine.connect(C.g3, domid: DomID(3), privileged: false)
    }

    /// Sends one request and returns all effects.
    mutating func send(
        _ conn: ConnectionID,
        _ type: XenstoreMessageType,
        _ payload: String,
        tx: UInt32 = 0
    )
        -> [XenstoreEffect]
    {
        nextReqID += 1
        return engine.handle(XenstoreMessage(type: type, reqID: nextReqID, txID: tx, payload: payload), from: conn)
    }

    /// Sends one request and returns the reply message to the sender (checking there is exactly one
    /// and that it echoes req_id and tx_id) plus the watch events fired.
    mutating func call(
        _ conn: ConnectionID,
        _ type: XenstoreMessageType,
        _ payload: String,
        tx: UInt32 = 0
    )
        -> (reply: XenstoreMessage?, events: [Event], effects: [XenstoreEffect])
    {
        let effects = send(conn, type, payload, tx: tx)
        var replies: [XenstoreMessage] = []
        var events: [Event] = []
        for effect in effects {
            guard case .send(let to, let message) = effect else { continue }
            if message.type == .watchEvent {
                let parts = message.payload.split(separator: 0, omittingEmptySubsequences: false)
                events.append(
                    Event(to, String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self))
                )
            } else {
                #expect(to == conn, "reply sent to another connection")
                replies.append(message)
            }
        }
        #expect(replies.count == 1, "expected exactly one reply, got \(replies)")
        if let reply = replies.first {
            #expect(reply.reqID == nextReqID)
            #expect(reply.txID == tx)
            #expect(reply.type == type || reply.type == .error)
        }
        return (replies.first, events, effects)
    }

    /// Runs a success-expected request and returns its payload as a string.
    @discardableResult
    mutating func ok(
        _ conn: ConnectionID,
        _ type: XenstoreMessageType,
        _ payload: String,
        tx: UInt32 = 0
    )
        -> String
    {
        let (reply, _, _) = call(conn, type, payload, tx: tx)
        #expect(reply?.type == type, "\(type) \(payload.debugDescription) failed: \(String(describing: reply))")
        return reply.map { String(decoding: $0.payload, as: UTF8.self) } ?? ""
    }

    /// Starts a transaction on `conn` and returns its id.
    mutating func begin(_ conn: ConnectionID) -> UInt32 {
        let reply = ok(conn, .transactionStart, "\0")
        return UInt32(reply.dropLast()) ?? 0
    }

    /// Runs a scenario table row by row, checking each reply, the events (where the row gives
    /// them) and the store's invariants. Transaction ids are predictable (per connection, from
    /// 1), so tables name them directly.
    mutating func run(_ steps: [Step], sourceLocation: SourceLocation = #_sourceLocation) {
        for (index, step) in steps.enumerated() {
            let (reply, events, _) = call(step.conn, step.type, step.payload, tx: step.tx)
            let label = Comment(rawValue: "row \(index): \(step)")
            let payload = reply.map { String(decoding: $0.payload, as: UTF8.self) }
            switch step.expect {
            case .ok:
                #expect(reply?.type == step.type && payload == "OK\0", label, sourceLocation: sourceLocation)
            case .error(let error):
                #expect(reply?.type == .error && payload == error.name + "\0", label, sourceLocation: sourceLocation)
            case .payload(let expected):
                #expect(reply?.type == step.type && payload == expected, label, sourceLocation: sourceLocation)
            case .anySuccess:
                #expect(reply?.type == step.type, label, sourceLocation: sourceLocation)
            }
            if let expected = step.events {
                #expect(events == expected, label, sourceLocation: sourceLocation)
            }
            #expect(engine.invariantViolations().isEmpty, label, sourceLocation: sourceLocation)
        }
    }
}
