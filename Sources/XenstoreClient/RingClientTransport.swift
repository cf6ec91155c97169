//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import XenABI
import XenHypervisor
import XenRing

/// The guest side of a xenstore ring: requests go into `req`, replies and watch
/// events come out of `rsp`, and the event channel carries wake-ups both ways.
///
/// A reader thread waits on the event channel. If xenstored goes away (its end of
/// the channel closes, which wakes us), the transport waits ``restartGrace`` for a
/// restarted xenstored to bind the channel again — it resumes the ring where it
/// stood, from its journal — and only then gives up: pending and later requests
/// fail with `connectionClosed` instead of hanging.
public final class RingClientTransport: XenstoreClientTransport, @unchecked Sendable {
    private let ring: XenstoreRing<GuestPage>
    private let page: GuestPage
    private let channel: any EventChannelEndpoint
    private let hypervisor: any EventChannels
    private let state = PthreadLocked(State())
    private let sink = PthreadLocked<(any XenstoreTransportSink)?>(nil)
    /// How long xenstored may be away before the ring is given up.
    public let restartGrace: Duration

    private struct State {
        var outgoing: [UInt8] = []
        var closed = false
    }

    /// - Parameters:
    ///   - page: the guest's xenstore page (its own frame).
    ///   - channel: the guest's end of the xenstore event channel.
    ///   - hypervisor: used to ask whether xenstored is still bound.
    public init(
        page: GuestPage,
        channel: any EventChannelEndpoint,
        hypervisor: any EventChannels,
        restartGrace: Duration = .seconds(10)
    ) {
        self.page = page
        self.ring = XenstoreRing(memory: page)
        self.channel = channel
        self.hypervisor = hypervisor
        self.restartGrace = restartGrace
    }

    private func isBound() -> Bool {
        if case .interdomain = (try? hypervisor.status(channel.port)) ?? .closed { return true }
        return false
    }

    /// Waits for xenstored to bind the channel again (a restart); false if it does
    /// not within ``restartGrace``.
    private func waitForRestart() -> Bool {
        let deadline = ContinuousClock.now + restartGrace
        while ContinuousClock.now < deadline, !isClosed {
            if isBound() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return isBound()
    }

    public var preferredExecutor: (any TaskExecutor)? { nil }

    public func start(_ sink: any XenstoreTransportSink) async throws {
        self.sink.withLock { $0 = sink }
        let thread = Thread { [self] in readLoop() }
        thread.name = "xenstore-ring"
        thread.start()
    }

    public func send(_ bytes: [UInt8]) {
        let closed = state.withLock { state in
            if !state.closed { state.outgoing += bytes }
            return state.closed
        }
        guard !closed else { return }
        pushOutgoing()
    }

    public func close() { finish(nil) }

    private var isClosed: Bool { state.withLock { $0.closed } }

    /// Moves queued request bytes into `req` as space allows.
    private func pushOutgoing() {
        let wrote: Int = state.withLock { state in
            guard !state.outgoing.isEmpty else { return 0 }
            let count = (try? state.outgoing.withUnsafeBytes { try ring.frontend.output.write($0) }) ?? 0
            state.outgoing.removeFirst(count)
            return count
        }
        if wrote > 0 { try? channel.notify() }
    }

    private func readLoop() {
        var buffer = [UInt8](repeating: 0, count: XenstoreInterface.ringSize)
        var lastRequestConsumer = ring.frontend.output.rawIndices.consumer
        while !isClosed {
            var progressed = false
            do {
                let count = try buffer.withUnsafeMutableBytes { try ring.frontend.input.read(into: $0) }
                if count > 0 {
                    progressed = true
                    try? channel.notify()
                    let receiver = sink.withLock { $0 }
                    receiver?.received(Array(buffer.prefix(count)))
                }
            } catch {
                finish(error)
                return
            }
            pushOutgoing()
            if ring.error != .none {
                finish(XenstoreClientError.protocolViolation("xenstored abandoned the ring"))
                return
            }
            if progressed { continue }
            // Sleep until notified. A wake-up that brought nothing — no reply and no
            // request consumed — or a second of silence may mean xenstored is gone:
            // ask the hypervisor whether anyone is still at the other end.
            let woke = (try? channel.wait(timeoutMilliseconds: 1000)) ?? false
            let requestConsumer = ring.frontend.output.rawIndices.consumer
            let consumed = requestConsumer != lastRequestConsumer
            lastRequestConsumer = requestConsumer
            if woke && (consumed || (try? ring.frontend.input.available()) ?? 0 > 0) { continue }
            if isBound() || waitForRestart() {
                pushOutgoing()
                try? channel.notify()
                continue
            }
            finish(XenstoreClientError.connectionClosed)
            return
        }
    }

    private func finish(_ error: (any Error)?) {
        let wasOpen = state.withLock { state in
            defer { state.closed = true }
            return !state.closed
        }
        guard wasOpen else { return }
        sink.withLock { $0 }?.closed(error)
    }
}

extension XenstoreClient {
    /// Connects a guest to xenstored over its own xenstore ring (from its start info).
    public static func connectRing(hypervisor: any GuestHypervisor) async throws -> XenstoreClient {
        let info = hypervisor.startInfo
        let page = try hypervisor.mapOwnFrame(info.xenstoreFrame)
        let channel = try hypervisor.attach(info.xenstorePort)
        return try await XenstoreClient(
            transport: RingClientTransport(page: page, channel: channel, hypervisor: hypervisor)
        )
    }
}

/// A value behind an `NSLock` (a pthread mutex). Used here instead of
/// Synchronization's `Mutex` because ThreadSanitizer sees pthread locks but not
/// that one, and this transport runs inside the tests' own process (in-process
/// xenstore), where TSan must be able to check it.
private final class PthreadLocked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
