//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// Which kind of console a pump serves; it decides what happens without a client.
public enum ConsoleKind: Sendable, Hashable {
    /// Console 0: output is never held back for want of a client. It goes to the
    /// log (if enabled) and the client history.
    case primary
    /// A secondary console or a named channel: output waits in the ring until a
    /// client takes it (backpressure, never loss).
    case channel
}

/// The client side of a console as the I/O shell sees it right now.
public enum SinkReadiness: Sendable, Hashable {
    /// No client endpoint is configured.
    case none
    /// A pty or listening socket exists, no client is attached.
    case waitingForClient
    /// A client is attached and can take `canAccept` bytes without blocking
    /// (negative counts as 0).
    case connected(canAccept: Int)
    /// The console is being torn down.
    case closed

    /// The state `conch stats` reports for this readiness.
    public var state: SinkState {
        switch self {
        case .none: .none
        case .waitingForClient: .waitingForClient
        case .connected: .connected
        case .closed: .closed
        }
    }
}

/// What the I/O shell should wait for before asking the pump again.
public enum PumpWait: Sendable, Hashable {
    /// Everything readable was planned: wait for the guest's next notification.
    case event
    /// The client limits progress: wait for a client to attach, or for the attached
    /// one to become writable.
    case client
    /// The rate limit: ask again after this many nanoseconds (`UInt64.max`: never).
    case timer(nanoseconds: UInt64)
    /// Nothing will move again: the console is quarantined or closed.
    case never
}

/// One step of the output direction (guest `out` ring → sink), as decided by
/// ``ConsolePump/planOutput(readable:sink:now:)``.
///
/// The shell peeks `count` bytes (without consuming), sends them to the client if
/// `sendToClient` (which may accept fewer), writes the ones that reached the client
/// — or all of them when not sending to a client — to the log if `writeToLog`, then
/// calls ``ConsolePump/commitOutput(_:plan:now:)`` with exactly the bytes that
/// reached every destination, and advances `out_cons` by that many.
///
/// Rule: **`out_cons` moves only past bytes that every destination in the plan has
/// accepted.** A `kill -9` at any point therefore loses nothing; it can only repeat
/// the bytes of the one step in flight.
public struct OutputPlan: Sendable, Hashable {
    /// Bytes to peek from the `out` ring now (0: nothing to do).
    public var count: Int
    /// Write them to the attached client.
    public var sendToClient: Bool
    /// Write them (the part the client accepted, if any) to the console log.
    public var writeToLog: Bool
    /// The pump appends committed bytes to console 0's history (informational: done
    /// by ``ConsolePump/commitOutput(_:plan:now:)``).
    public var appendToHistory: Bool
    /// What to wait for after this step.
    public var wait: PumpWait

    public init(count: Int, sendToClient: Bool, writeToLog: Bool, appendToHistory: Bool, wait: PumpWait) {
        self.count = count
        self.sendToClient = sendToClient
        self.writeToLog = writeToLog
        self.appendToHistory = appendToHistory
        self.wait = wait
    }

    /// Nothing to move; wait as given.
    public static func idle(_ wait: PumpWait) -> OutputPlan {
        OutputPlan(count: 0, sendToClient: false, writeToLog: false, appendToHistory: false, wait: wait)
    }
}

/// The flow-control core of one console: how many bytes to move in each direction,
/// when `out_cons` may advance, rate limiting, console 0's history, the ring guard
/// and the counters. It does no I/O; the consoled shell owns the ring, sinks and
/// log, and asks the pump before and after each step.
///
/// ## Output (guest → host)
///
/// `want` = bytes readable in the `out` ring; then
///
/// | kind    | sink                     | bytes read                       | destinations          |
/// |---------|--------------------------|----------------------------------|-----------------------|
/// | any     | quarantined / `.closed`  | 0, wait `.never`                 | —                     |
/// | channel | `.none`/`.waitingFor…`   | 0, wait `.client` (backpressure) | —                     |
/// | channel | `.connected(k)`          | min(want, k, tokens)             | client (+ log if on)  |
/// | primary | `.none`/`.waitingFor…`   | min(want, tokens)                | log if on; history    |
/// | primary | `.connected(k)`          | min(want, k, tokens)             | client, log; history  |
///
/// An attached client paces console 0 as it paces a channel (the guest waits, no
/// byte is lost); only the *absence* of a client lets console 0 run free. Without
/// a client and without a log, console 0's output lives only in the history: it is
/// consumed once appended there, and the history's drops are counted and marked.
///
/// Worked example (primary, log on, no client, default bucket, readable 2048):
/// `planOutput` → count 2048, log + history, wait `.event`; the shell writes the
/// log, calls `commitOutput(bytes)`, advances `out_cons` by 2048; `bytesOut` += 2048.
///
/// Worked example (channel, client can accept 100, readable 2048): count 100, wait
/// `.client`; the client takes 60 → `commitOutput(first 60)` → `out_cons` += 60, 40
/// tokens are refunded, the remaining 1988 bytes stay in the ring.
///
/// ## Input (host → guest)
///
/// ``planInput(freeSpace:clientAvailable:)`` = min(free space in `in`, bytes the
/// client offers); an invalid ring counts as no space. The shell reads only that
/// many from the client: the rest stays in the client's socket or pty (reading is
/// paused until the guest consumes), so input is never dropped. Input is not rate
/// limited: it comes from the host's own client, and the guest paces it by
/// consuming.
public struct ConsolePump: Sendable {
    /// Everything that shapes a pump.
    public struct Configuration: Sendable, Hashable {
        public var kind: ConsoleKind
        /// A log file receives this console's output.
        public var logging: Bool
        public var rate: TokenBucket.Configuration
        /// Console 0's client history; ignored for channels.
        public var historyCapacity: Int
        public var guardThresholds: RingGuard.Thresholds
        /// Size of the `out` ring (2048 for the console page).
        public var outRingSize: Int

        public init(
            kind: ConsoleKind,
            logging: Bool = false,
            rate: TokenBucket.Configuration = .default,
            historyCapacity: Int = ConsoleHistory.defaultCapacity,
            guardThresholds: RingGuard.Thresholds = .default,
            outRingSize: Int = ConsoleInterface.outSize
        ) {
            self.kind = kind
            self.logging = logging
            self.rate = rate
            self.historyCapacity = historyCapacity
            self.guardThresholds = guardThresholds
            self.outRingSize = outRingSize
        }
    }

    /// The configuration the pump was created with.
    public let configuration: Configuration
    /// This console's counters, kept current by every call; `conch stats` reads them.
    public private(set) var counters = ConsoleCounters()
    /// The rate limiter for the output direction.
    public private(set) var bucket: TokenBucket
    /// Console 0's client history (capacity 0, unused, for channels).
    public private(set) var history: ConsoleHistory
    /// The quarantine rules; fed through ``inspect(_:now:)``, ``notification(now:)`` and
    /// the commit calls.
    public private(set) var ringGuard: RingGuard
    private var ringWasFull = false

    /// A pump with a full token bucket at `now` and empty history and counters. A
    /// restarted consoled creates a new one: the ring itself holds the undelivered
    /// bytes, so no pump state needs to survive a crash.
    public init(_ configuration: Configuration, now: UInt64) {
        self.configuration = configuration
        bucket = TokenBucket(configuration.rate, now: now)
        history = ConsoleHistory(capacity: configuration.kind == .primary ? configuration.historyCapacity : 0)
        ringGuard = RingGuard(
            thresholds: configuration.guardThresholds,
            outSize: UInt32(clamping: configuration.outRingSize)
        )
    }

    public var isQuarantined: Bool { ringGuard.isQuarantined }

    /// Records the sink's state for the counters without planning anything.
    public mutating func updateSink(_ sink: SinkReadiness) {
        counters.sinkState = sink.state
    }

    /// Decides the next output step (see the type's table). `readable` is
    /// `out_prod − out_cons`; a value outside `0...outRingSize` plans nothing (the
    /// guard quarantines such rings when it inspects them).
    public mutating func planOutput(readable: Int, sink: SinkReadiness, now: UInt64) -> OutputPlan {
        counters.sinkState = sink.state
        guard !isQuarantined, sink != .closed else { return .idle(.never) }
        guard readable >= 0, readable <= configuration.outRingSize else { return .idle(.event) }
        let isFull = readable == configuration.outRingSize && readable > 0
        if isFull && !ringWasFull { counters.ringFullEvents = counters.ringFullEvents.addingSaturated(1) }
        ringWasFull = isFull
        guard readable > 0 else { return .idle(.event) }

        var wanted = readable
        var clientLimits = false
        switch sink {
        case .connected(let canAccept):
            let accept = max(0, canAccept)
            if accept < wanted {
                wanted = accept
                clientLimits = true
            }
        case .none, .waitingForClient:
            if configuration.kind == .channel { return .idle(.client) }
        case .closed:
            return .idle(.never)
        }
        guard wanted > 0 else { return .idle(.client) }

        let granted = bucket.take(wanted, now: now)
        counters.throttledPeriods = bucket.throttledPeriods
        let wait: PumpWait
        if granted < wanted {
            // Wait for the rest of what this step wanted (clamped to the burst by the
            // bucket), not for a trickle: fewer, larger steps.
            wait = .timer(nanoseconds: bucket.timeUntilAvailable(wanted - granted, now: now))
        } else {
            wait = clientLimits ? .client : .event
        }
        if case .connected = sink {
            return OutputPlan(
                count: granted,
                sendToClient: true,
                writeToLog: configuration.logging,
                appendToHistory: configuration.kind == .primary,
                wait: wait
            )
        }
        return OutputPlan(
            count: granted,
            sendToClient: false,
            writeToLog: configuration.logging,
            appendToHistory: true,
            wait: wait
        )
    }

    /// Records the bytes of `plan` that reached every destination; returns how far
    /// to advance `out_cons` (their count). Unused tokens go back to the bucket.
    @discardableResult
    public mutating func commitOutput(_ delivered: some Collection<UInt8>, plan: OutputPlan, now: UInt64) -> Int {
        let count = delivered.count
        if plan.count > count { bucket.refund(plan.count - count) }
        guard count > 0 else { return 0 }
        counters.bytesOut = counters.bytesOut.addingSaturated(UInt64(count))
        if configuration.kind == .primary {
            let dropped = history.append(delivered)
            counters.droppedBytes = counters.droppedBytes.addingSaturated(UInt64(dropped))
            // Console 0 never waits for its client: bytes its pty could not take are
            // in the log and the history, and the client is told how many it missed.
            if !plan.sendToClient { clientMissed += count }
        }
        ringGuard.progress(now: now)
        return count
    }

    /// Console 0 bytes the client's pty could not take since it last could.
    public private(set) var clientMissed = 0

    /// When console 0's client can take bytes again after missing some: the line
    /// to show it first, and the count goes into ``ConsoleCounters/clientMissedBytes``.
    /// nil when it missed nothing.
    public mutating func takeClientMissedMarker() -> [UInt8]? {
        guard clientMissed > 0 else { return nil }
        defer { clientMissed = 0 }
        counters.clientMissedBytes = counters.clientMissedBytes.addingSaturated(UInt64(clientMissed))
        return Array(
            "\r\n[conch: \(clientMissed) bytes not shown: this console's client read too slowly; they are in the log]\r\n"
                .utf8
        )
    }

    /// What a newly attached client is sent first: console 0's history (with its drop
    /// marker when anything was dropped); nothing for channels, whose undelivered
    /// output is still in the ring. What an earlier client missed is in it.
    public mutating func replayForNewClient() -> [UInt8] {
        guard configuration.kind == .primary else { return [] }
        clientMissed = 0
        return history.replay()
    }

    /// How many bytes to move from the client into the `in` ring: min(free space,
    /// offered). `freeSpace` `nil` means the ring's indices are invalid: nothing moves.
    public func planInput(freeSpace: Int?, clientAvailable: Int) -> Int {
        guard !isQuarantined, let freeSpace else { return 0 }
        return max(0, min(freeSpace, clientAvailable))
    }

    /// Records `count` bytes copied into the `in` ring.
    public mutating func commitInput(count: Int, now: UInt64) {
        guard count > 0 else { return }
        counters.bytesIn = counters.bytesIn.addingSaturated(UInt64(count))
        ringGuard.progress(now: now)
    }

    /// Counts a notification from the guest and checks for an event storm.
    public mutating func notification(now: UInt64) -> RingGuard.Verdict {
        counters.notifications = counters.notifications.addingSaturated(1)
        return record(ringGuard.notification(now: now))
    }

    /// Checks a snapshot of the page's indices and flag (see ``RingGuard``).
    public mutating func inspect(_ snapshot: RingSnapshot, now: UInt64) -> RingGuard.Verdict {
        record(ringGuard.inspect(snapshot, now: now))
    }

    /// Records a value consoled wrote to the `connection` byte.
    public mutating func backendWroteFlag(_ value: ConsoleConnection) {
        ringGuard.backendWroteFlag(value)
        counters.flagTransitions = ringGuard.flagTransitions
    }

    /// Quarantines the console for a problem the shell detected; counted like the
    /// guard's own findings.
    public mutating func quarantine(reason: String) {
        _ = record(ringGuard.quarantine(because: reason))
    }

    private mutating func record(_ verdict: RingGuard.Verdict) -> RingGuard.Verdict {
        counters.flagTransitions = ringGuard.flagTransitions
        if case .quarantine(let reason) = verdict, counters.quarantineReason == nil {
            counters.quarantines = counters.quarantines.addingSaturated(1)
            counters.quarantineReason = reason
        }
        return verdict
    }
}
