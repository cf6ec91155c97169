//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// The backend's half of a secondary console's xenbus handshake (a channel, or
/// console N > 0), as a pure function from what consoled sees to what it does.
///
/// consoled reads the frontend's `state` node, which the guest writes, so any
/// value (or none) can arrive at any time; every combination has an answer and
/// none of them skips a step. The shell performs the step, then writes
/// ``backendState(after:current:)`` to the backend's `state` node.
///
/// ```
/// frontend   Initialising/InitWait   Initialised/Connected   Closing/Closed
/// idle       publishSink             connect                 —
/// published  —                       connect                 discardSink
/// connected  —                       —                       close
/// ```
public enum ConsoleBackendHandshake {
    /// How far consoled has come with one device.
    public enum Progress: Hashable, Sendable {
        /// Nothing set up.
        case idle
        /// The sink is published before the guest runs: the socket listens or the
        /// pty's path is in `tty`, so a dom0 agent can attach early.
        case sinkPublished
        /// The ring is mapped, the port bound, bytes flow.
        case connected
    }

    /// What consoled does next.
    public enum Step: Hashable, Sendable {
        /// Nothing: wait for the next change.
        case wait
        /// Publish the sink; then the backend announces InitWait.
        case publishSink
        /// Map the frontend's `ring-ref`, bind its `port`, start pumping; then the
        /// backend is Connected.
        case connect
        /// Stop serving the console; then the backend is Closed.
        case close
        /// Forget a published sink whose frontend went away before connecting.
        case discardSink
    }

    /// The next step for a device whose frontend reports `frontend` (nil: absent
    /// or not a state).
    public static func step(frontend: XenbusState?, progress: Progress) -> Step {
        switch (frontend, progress) {
        case (.initialising?, .idle), (.initWait?, .idle):
            return .publishSink
        case (.initialised?, .idle), (.initialised?, .sinkPublished),
            (.connected?, .idle), (.connected?, .sinkPublished):
            return .connect
        case (.closing?, .connected), (.closed?, .connected):
            return .close
        case (.closing?, .sinkPublished), (.closed?, .sinkPublished):
            return .discardSink
        default:
            return .wait
        }
    }

    /// The step for a device the toolstack removed from the backend tree.
    public static func stepForRemovedDevice(progress: Progress) -> Step {
        switch progress {
        case .idle: .wait
        case .sinkPublished: .discardSink
        case .connected: .close
        }
    }

    /// The backend `state` to write once `step` succeeded, or nil to leave it.
    /// InitWait only replaces Initialising: a backend that already moved on (a
    /// restarted consoled finding it Connected) is not moved back.
    public static func backendState(after step: Step, current: XenbusState?) -> XenbusState? {
        switch step {
        case .publishSink: current == .initialising ? .initWait : nil
        case .connect: .connected
        case .close: .closed
        case .wait, .discardSink: nil
        }
    }
}

/// The guest's half of a secondary console's xenbus handshake, as a pure function
/// of the two `state` nodes and how far the guest has come. The backend's node is
/// dom0's to write, but a guest kernel still treats it as input: only the values
/// below move it.
public enum ConsoleFrontendHandshake {
    /// How far the guest has come with one device.
    public enum Progress: Hashable, Sendable {
        /// No ring yet.
        case absent
        /// The ring page is granted and `ring-ref`, `port` and Initialised written.
        case ringOffered
        /// The backend connected; the device (`hvc<N>`) relays.
        case connected
    }

    /// What the guest does next.
    public enum Step: Hashable, Sendable {
        /// Nothing: wait for the next change.
        case wait
        /// Grant a ring page, allocate a port, write `ring-ref` and `port`; then
        /// the frontend is Initialised.
        case offerRing
        /// Start relaying; then the frontend is Connected.
        case connect
        /// Stop relaying and drop the device; then the frontend is Closed.
        case close
    }

    public static func step(frontend: XenbusState?, backend: XenbusState?, progress: Progress) -> Step {
        switch (progress, backend) {
        case (.absent, _):
            return frontend == .initialising ? .offerRing : .wait
        case (.ringOffered, .connected?):
            return frontend == .initialised ? .connect : .wait
        case (.ringOffered, .closing?), (.ringOffered, .closed?), (.connected, .closing?), (.connected, .closed?):
            return .close
        default:
            return .wait
        }
    }

    /// The frontend `state` to write once `step` succeeded, or nil to leave it.
    public static func frontendState(after step: Step) -> XenbusState? {
        switch step {
        case .offerRing: .initialised
        case .connect: .connected
        case .close: .closed
        case .wait: nil
        }
    }
}
