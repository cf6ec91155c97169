//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// The XenBus device state machine, `enum xenbus_state` in
/// `xen/include/public/io/xenbus.h`. Both ends of a split device publish their
/// state as a decimal string in their `state` node.
public enum XenbusState: UInt32, CaseIterable, Sendable, CustomStringConvertible {
    case unknown = 0
    case initialising = 1
    /// The backend waits for the frontend's details.
    case initWait = 2
    /// The frontend published `ring-ref` and `port`.
    case initialised = 3
    case connected = 4
    /// The device is being shut down.
    case closing = 5
    case closed = 6
    case reconfiguring = 7
    case reconfigured = 8

    /// Parses the decimal text of a `state` node; nil for anything else.
    public init?(nodeValue: some StringProtocol) {
        guard let raw = UInt32(nodeValue), let state = XenbusState(rawValue: raw) else { return nil }
        self = state
    }

    public var description: String {
        switch self {
        case .unknown: "Unknown"
        case .initialising: "Initialising"
        case .initWait: "InitWait"
        case .initialised: "Initialised"
        case .connected: "Connected"
        case .closing: "Closing"
        case .closed: "Closed"
        case .reconfiguring: "Reconfiguring"
        case .reconfigured: "Reconfigured"
        }
    }
}
