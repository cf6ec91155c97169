//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// Where a console's output goes right now, as `conch stats` reports it.
///
/// JSON: `"none"`, `"waiting_for_client"`, `"connected"`, `"closed"`.
public enum SinkState: String, Codable, Sendable, CaseIterable {
    /// No client endpoint is configured (console 0 with a log only, say).
    case none
    /// A pty or listening socket exists but no client is attached.
    case waitingForClient = "waiting_for_client"
    /// A client is attached.
    case connected
    /// The console is being torn down; nothing more is delivered.
    case closed
}

/// Per-console counters, as `conch stats [DOM] [--json]` prints them.
///
/// Directions are named from the host's side, as for a network interface:
/// `bytesOut` is guest output delivered (ring → sink/log), `bytesIn` is client input
/// placed into the guest's `in` ring.
///
/// ## JSON shape (stable)
///
/// Every key is always present; `quarantine_reason` is `null` when not quarantined.
///
/// ```json
/// {"bytes_in":0,"bytes_out":4096,"client_missed_bytes":0,"dropped_bytes":0,"flag_transitions":1,
///  "notifications":3,"quarantine_reason":null,"quarantines":0,"ring_full_events":0,
///  "sink_state":"waiting_for_client","throttled_periods":0}
/// ```
public struct ConsoleCounters: Codable, Equatable, Hashable, Sendable {
    /// Guest output delivered to the sink and/or log (each byte once).
    public var bytesOut: UInt64 = 0
    /// Client input copied into the guest's `in` ring.
    public var bytesIn: UInt64 = 0
    /// Times the `out` ring was seen full after not being full.
    public var ringFullEvents: UInt64 = 0
    /// Rate-limiter throttled periods (see ``TokenBucket``).
    public var throttledPeriods: UInt64 = 0
    /// Bytes dropped from console 0's client history. Channels never drop.
    public var droppedBytes: UInt64 = 0
    /// Console 0 bytes an attached client did not get because it read too slowly
    /// (its pty was full); they are in the log, and the client saw a marker.
    public var clientMissedBytes: UInt64 = 0
    /// Times the console was quarantined (0 or 1 per console lifetime; more in sums).
    public var quarantines: UInt64 = 0
    /// Changes of the `connection` byte, whoever made them.
    public var flagTransitions: UInt64 = 0
    /// Event-channel notifications received from the guest.
    public var notifications: UInt64 = 0
    /// Sink state at the last update.
    public var sinkState: SinkState = .none
    /// Why the console was quarantined, if it was.
    public var quarantineReason: String?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case bytesOut = "bytes_out"
        case bytesIn = "bytes_in"
        case ringFullEvents = "ring_full_events"
        case throttledPeriods = "throttled_periods"
        case droppedBytes = "dropped_bytes"
        case clientMissedBytes = "client_missed_bytes"
        case quarantines
        case flagTransitions = "flag_transitions"
        case notifications
        case sinkState = "sink_state"
        case quarantineReason = "quarantine_reason"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        // Missing numbers read as 0, so output of an older consoled still decodes.
        func number(_ key: CodingKeys) throws -> UInt64 { try container.decodeIfPresent(UInt64.self, forKey: key) ?? 0 }
        bytesOut = try number(.bytesOut)
        bytesIn = try number(.bytesIn)
        ringFullEvents = try number(.ringFullEvents)
        throttledPeriods = try number(.throttledPeriods)
        droppedBytes = try number(.droppedBytes)
        clientMissedBytes = try number(.clientMissedBytes)
        quarantines = try number(.quarantines)
        flagTransitions = try number(.flagTransitions)
        notifications = try number(.notifications)
        sinkState = try container.decodeIfPresent(SinkState.self, forKey: .sinkState) ?? .none
        quarantineReason = try container.decodeIfPresent(String.self, forKey: .quarantineReason)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(bytesOut, forKey: .bytesOut)
        try container.encode(bytesIn, forKey: .bytesIn)
        try container.encode(ringFullEvents, forKey: .ringFullEvents)
        try container.encode(throttledPeriods, forKey: .throttledPeriods)
        try container.encode(droppedBytes, forKey: .droppedBytes)
        try container.encode(clientMissedBytes, forKey: .clientMissedBytes)
        try container.encode(quarantines, forKey: .quarantines)
        try container.encode(flagTransitions, forKey: .flagTransitions)
        try container.encode(notifications, forKey: .notifications)
        try container.encode(sinkState, forKey: .sinkState)
        // Explicit null rather than an absent key: the shape does not depend on state.
        if let quarantineReason {
            try container.encode(quarantineReason, forKey: .quarantineReason)
        } else {
            try container.encodeNil(forKey: .quarantineReason)
        }
    }

    /// Adds `other`'s numeric counters to these (saturating). `sinkState` and
    /// `quarantineReason` describe one console and are left as they are.
    public mutating func add(_ other: ConsoleCounters) {
        bytesOut = bytesOut.addingSaturated(other.bytesOut)
        bytesIn = bytesIn.addingSaturated(other.bytesIn)
        ringFullEvents = ringFullEvents.addingSaturated(other.ringFullEvents)
        throttledPeriods = throttledPeriods.addingSaturated(other.throttledPeriods)
        droppedBytes = droppedBytes.addingSaturated(other.droppedBytes)
        clientMissedBytes = clientMissedBytes.addingSaturated(other.clientMissedBytes)
        quarantines = quarantines.addingSaturated(other.quarantines)
        flagTransitions = flagTransitions.addingSaturated(other.flagTransitions)
        notifications = notifications.addingSaturated(other.notifications)
    }

    /// Totals over several consoles (a domain's line, or the whole host): numbers are
    /// summed; `sinkState` is `.none` and `quarantineReason` `nil`, since neither
    /// means anything for a sum (the number of quarantines does).
    public static func total(of counters: some Sequence<ConsoleCounters>) -> ConsoleCounters {
        var sum = ConsoleCounters()
        for item in counters { sum.add(item) }
        return sum
    }
}

/// One console in `conch stats`.
public struct ConsoleStats: Codable, Sendable, Equatable {
    public var domid: UInt16
    public var devid: Int
    public var name: String
    public var connection: String
    public var path: String?
    public var counters: ConsoleCounters
    /// The pid of the `conch console` or `conch web` session attached to it, if any
    /// (its session lock's holder): whether somebody is actually reading a pty
    /// console, which `sink_state` cannot tell.
    public var sessionPid: Int32?
    /// For a socket channel: whether a client is connected to its socket now, as
    /// the sink keeper reports; nil for a pty console (see ``sessionPid``).
    public var clientConnected: Bool?

    public init(
        domid: UInt16,
        devid: Int,
        name: String,
        connection: String,
        path: String?,
        counters: ConsoleCounters,
        sessionPid: Int32? = nil
    ) {
        self.domid = domid
        self.devid = devid
        self.name = name
        self.connection = connection
        self.path = path
        self.counters = counters
        self.sessionPid = sessionPid
    }

    enum CodingKeys: String, CodingKey {
        case domid, devid, name, connection, path, counters
        case sessionPid = "session_pid"
        case clientConnected = "client_connected"
    }
}

/// The whole of `conch stats --json`.
public struct ConsoledStats: Codable, Sendable, Equatable {
    public var consoles: [ConsoleStats]
    public var totals: ConsoleCounters

    public init(consoles: [ConsoleStats], totals: ConsoleCounters) {
        self.consoles = consoles
        self.totals = totals
    }
}
