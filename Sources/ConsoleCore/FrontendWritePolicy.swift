//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// How the guest's console frontend treats the `connection` flag. The raw values
/// are the names a configuration uses (xl.cfg's `conch_frontend`, conch-pv-guest's
/// `frontend=`, `conch guest-kernel --frontend`).
public enum FrontendMode: String, Sendable, Hashable, CaseIterable {
    /// The seed's frontend (Conch's own guests): read the flag before every write;
    /// while disconnected, output goes to the hypervisor console and into a boot
    /// history replayed once a backend connects; a full ring waits on the event
    /// channel. No upstream kernel does this.
    case flagAware = "new"
    /// hvc_xen since Linux 7.1: while the flag says DISCONNECTED a write fails
    /// (`-ENOTCONN`) and its bytes are dropped, on console 0 and on every channel;
    /// otherwise as legacy.
    case dropWhileDisconnected = "linux71"
    /// hvc_xen before Linux 7.1: ignore the flag; on a full ring, yield and retry.
    case legacy

    /// Whether this frontend reads the `connection` flag at all.
    public var readsConnectionFlag: Bool { self != .legacy }
}

#if !hasFeature(Embedded)
extension FrontendMode: Codable {}
#endif

/// What the frontend does next with its pending output.
public enum FrontendWriteAction: Sendable, Hashable {
    /// Send all pending bytes to the hypervisor console (`console_io`). The
    /// stateful ``FrontendConsole`` has already recorded them in its boot history.
    case hypervisorConsole
    /// Copy the first `count` pending bytes into the `out` ring (they fit).
    case ring(count: Int)
    /// Copy these bytes (replay marker and boot history) into the `out` ring before
    /// any pending byte. They fit in the free space that was passed in; the caller
    /// must write them all.
    case replay([UInt8])
    /// The ring is full: block on the event channel until the backend consumes.
    case waitForSpace
    /// The ring is full (legacy): yield the CPU and try again.
    case yieldAndRetry
    /// Legacy mode with invalid ring indices: hvc_xen fails the write (`-EINVAL`)
    /// and the bytes are lost. Modelled so the compatibility matrix can show it.
    case discard
    /// Nothing pending and nothing to replay.
    case done
}

/// The stateless write decision of the console 0 frontend.
///
/// | mode      | flag         | ring free space | action                        |
/// |-----------|--------------|-----------------|-------------------------------|
/// | flagAware | DISCONNECTED | any             | `.hypervisorConsole`          |
/// | flagAware | connected    | invalid (`nil`) | `.hypervisorConsole`          |
/// | flagAware | connected    | 0               | `.waitForSpace`               |
/// | flagAware | connected    | f > 0           | `.ring(min(f, pending))`      |
/// | legacy    | ignored      | invalid (`nil`) | `.discard`                    |
/// | legacy    | ignored      | 0               | `.yieldAndRetry`              |
/// | legacy    | ignored      | f > 0           | `.ring(min(f, pending))`      |
/// | drop      | DISCONNECTED | any             | `.discard`                    |
/// | drop      | connected    | as legacy       | as legacy                     |
///
/// "Connected" is any value but 1, as Linux reads it: a zeroed page (old toolstack)
/// is connected. A flag-aware frontend facing an invalid ring sends to the
/// hypervisor console rather than hang or lose the bytes.
public enum FrontendWritePolicy {
    /// The action for `pending` bytes (`.done` when none), per the table above.
    /// `freeSpace` is the `out` ring's free space, `nil` when its indices are invalid.
    public static func action(
        mode: FrontendMode,
        flag: ConsoleConnection,
        freeSpace: Int?,
        pending: Int
    ) -> FrontendWriteAction {
        guard pending > 0 else { return .done }
        switch mode {
        case .flagAware:
            if flag.isDisconnected { return .hypervisorConsole }
            guard let freeSpace else { return .hypervisorConsole }
            return freeSpace > 0 ? .ring(count: min(freeSpace, pending)) : .waitForSpace
        case .legacy:
            guard let freeSpace else { return .discard }
            return freeSpace > 0 ? .ring(count: min(freeSpace, pending)) : .yieldAndRetry
        case .dropWhileDisconnected:
            if flag.isDisconnected { return .discard }
            guard let freeSpace else { return .discard }
            return freeSpace > 0 ? .ring(count: min(freeSpace, pending)) : .yieldAndRetry
        }
    }
}

/// The stateful console 0 frontend core: ``FrontendWritePolicy`` plus the boot
/// history kept while disconnected and its replay once a backend connects.
///
/// The frontend's write loop:
///
/// ```
/// while true {
///     switch core.nextAction(pending: pending, flag: page.flag, freeSpace: ring.freeSpace) {
///     case .hypervisorConsole: console_io(pending); pending = []
///     case .ring(let n):       ring.write(pending.prefix(n)); pending.removeFirst(n)
///     case .replay(let bytes): ring.write(bytes)
///     case .waitForSpace:      await eventChannel
///     case .yieldAndRetry:     yield()
///     case .discard:           pending = []
///     case .done:              return
///     }
/// }
/// ```
///
/// ## Replay
///
/// In flag-aware mode, whenever the flag reads connected and the boot history is
/// not empty, the next actions replay `marker + history` into the ring, in chunks
/// that fit, before any pending byte. Bytes replayed are removed from the history as
/// they go; if the backend disconnects (or the ring turns invalid) half-way, the
/// part not yet replayed stays in the history and the next connect replays it under
/// a new marker. Nothing is replayed twice and nothing is lost silently.
///
/// ```
/// flag 1: write "boot\n"      → .hypervisorConsole          history "boot\n"
/// flag 0: write "login: "     → .replay("[conch: replaying 5 bytes …]\r\nboot\n")
///                             → .ring(count: 7)
/// ```
public struct FrontendConsole: Sendable {
    public let mode: FrontendMode
    public private(set) var history: GuestBootHistory

    /// The replay in progress: the bytes and how many have been handed out.
    private var replay: (bytes: [UInt8], markerCount: Int, sent: Int)?

    public init(mode: FrontendMode, historyCapacity: Int = GuestBootHistory.defaultCapacity) {
        self.mode = mode
        history = GuestBootHistory(capacity: historyCapacity)
    }

    /// True while a replay has started but not finished.
    public var isReplaying: Bool { replay != nil }

    /// The next action for `pending` output given the flag and the `out` ring's free
    /// space (`nil`: indices invalid). `.hypervisorConsole` also records `pending`
    /// in the boot history (flag-aware mode only).
    public mutating func nextAction(
        pending: some Collection<UInt8>,
        flag: ConsoleConnection,
        freeSpace: Int?
    ) -> FrontendWriteAction {
        guard mode == .flagAware else {
            return FrontendWritePolicy.action(mode: mode, flag: flag, freeSpace: freeSpace, pending: pending.count)
        }
        if flag.isDisconnected || freeSpace == nil {
            abandonReplay()
            guard !pending.isEmpty else { return .done }
            history.record(pending)
            return .hypervisorConsole
        }
        if replay == nil && !history.isEmpty {
            let marker = history.replayMarker()
            replay = (marker + history.retained, marker.count, 0)
        }
        if let active = replay {
            let free = max(0, freeSpace ?? 0)
            guard free > 0 else { return .waitForSpace }
            let end = min(active.bytes.count, active.sent + free)
            let chunk = Array(active.bytes[active.sent..<end])
            // History bytes handed out leave the history now, so an abandoned replay
            // resumes exactly where it stopped.
            let historyBefore = max(0, active.sent - active.markerCount)
            let historyAfter = max(0, end - active.markerCount)
            history.removeOldest(historyAfter - historyBefore)
            // Once the marker is out, the drops it announced need no second mention.
            if end >= active.markerCount { history.clearDropCount() }
            if end == active.bytes.count {
                replay = nil
            } else {
                replay = (active.bytes, active.markerCount, end)
            }
            return .replay(chunk)
        }
        return FrontendWritePolicy.action(mode: mode, flag: flag, freeSpace: freeSpace, pending: pending.count)
    }

    /// A replay cut short: the history bytes not yet handed out are still in the
    /// history, and the next replay starts with a fresh marker.
    private mutating func abandonReplay() {
        replay = nil
    }
}
