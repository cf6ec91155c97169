//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import SystemExtras
import XenABI
import XenHypervisor
import XenRing
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

extension ConsoleDaemon {
    // MARK: - Moving bytes

    /// Runs after every notification and every change on the client side.
    func service(_ key: ConsoleKey) {
        guard let session = sessions[key], !session.closed, !session.pump.isQuarantined else { return }
        pushInput(session)
        announceMissedOutput(session)
        pumpOutput(session)
    }

    /// Console 0's client can take bytes again after its pty was full: tell it how
    /// many it missed, even if the guest has nothing new to say.
    func announceMissedOutput(_ session: ConsoleSession) {
        guard session.key.devid == 0, let output = session.outputChannel, output.isWritable,
            let marker = session.pump.takeClientMissedMarker()
        else { return }
        output.writeAndFlush(output.allocator.buffer(bytes: marker), promise: nil)
    }

    func pumpOutput(_ session: ConsoleSession) {
        guard !session.pumping else {
            session.pumpAgain = true
            return
        }
        session.pumping = true
        defer { session.pumping = false }
        repeat {
            session.pumpAgain = false
            pumpOutputOnce(session)
        } while session.pumpAgain && !session.closed
    }

    func pumpOutputOnce(_ session: ConsoleSession) {
        while !session.writeInFlight {
            let snapshot = session.snapshot
            switch session.pump.inspect(snapshot, now: now) {
            case .ok: break
            case .restoreFlag(let value):
                session.ring.connection = value
                session.pump.backendWroteFlag(value)
            case .quarantine(let reason):
                quarantine(session, reason)
                return
            }
            let readable = Int(snapshot.outProd &- snapshot.outCons)
            let plan = session.pump.planOutput(readable: readable, sink: session.sinkReadiness, now: now)
            guard plan.count > 0 else {
                if case .timer(let nanoseconds) = plan.wait { armRateTimer(session, nanoseconds) }
                return
            }
            guard let bytes = try? session.ring.backend.input.peek(maxCount: plan.count) else {
                quarantine(session, "invalid ring indices")
                return
            }
            if session.key.devid == 0 {
                // Console 0: the log is the delivery that matters; the client is best effort
                // (its history replays what it missed).
                if plan.writeToLog, let log = session.log, !log.append(bytes) {
                    session.pump.commitOutput([], plan: plan, now: now)
                    return
                }
                if plan.sendToClient, let output = session.outputChannel {
                    if let marker = session.pump.takeClientMissedMarker() {
                        output.write(output.allocator.buffer(bytes: marker), promise: nil)
                    }
                    output.writeAndFlush(output.allocator.buffer(bytes: bytes), promise: nil)
                }
                commit(session, bytes, plan)
                continue
            }
            // A channel: consume only once the client's socket or pty took the bytes.
            guard plan.sendToClient, let output = session.outputChannel else {
                session.pump.commitOutput([], plan: plan, now: now)
                return
            }
            session.writeInFlight = true
            let key = session.key
            let identity = ObjectIdentifier(session)
            output.writeAndFlush(output.allocator.buffer(bytes: bytes)).whenComplete { [self] result in
                self.assumeIsolated { daemon in daemon.written(key, identity, bytes, plan, result) }
            }
        }
    }

    func written(
        _ key: ConsoleKey,
        _ identity: ObjectIdentifier,
        _ bytes: [UInt8],
        _ plan: OutputPlan,
        _ result: Result<Void, any Error>
    ) {
        guard let session = sessions[key], ObjectIdentifier(session) == identity else { return }
        session.writeInFlight = false
        switch result {
        case .success:
            commit(session, bytes, plan)
            pumpOutput(session)
        case .failure:
            session.pump.commitOutput([], plan: plan, now: now)  // still in the ring
        }
    }

    func commit(_ session: ConsoleSession, _ bytes: [UInt8], _ plan: OutputPlan) {
        let count = session.pump.commitOutput(bytes, plan: plan, now: now)
        guard count > 0 else { return }
        do {
            try session.ring.backend.input.consume(count)
            try session.channel.notify()
        } catch {
            quarantine(session, "\(error)")
        }
    }

    func armRateTimer(_ session: ConsoleSession, _ nanoseconds: UInt64) {
        guard !session.rateTimerArmed, nanoseconds != .max else { return }
        session.rateTimerArmed = true
        let key = session.key
        eventLoop.scheduleTask(in: .nanoseconds(Int64(min(nanoseconds, UInt64(Int64.max))))) { [self] in
            self.assumeIsolated { daemon in
                daemon.sessions[key]?.rateTimerArmed = false
                daemon.service(key)
            }
        }
    }

    /// Client bytes into the `in` ring, as space allows; the rest waits and the
    /// client stops being read until the guest makes room. Nothing is dropped.
    func pushInput(_ session: ConsoleSession) {
        guard !session.pendingInput.isEmpty else { return }
        let free = try? session.ring.backend.output.freeSpace()
        let count = session.pump.planInput(freeSpace: free, clientAvailable: session.pendingInput.count)
        if count > 0, let written = try? session.ring.backend.output.write(session.pendingInput.prefix(count)) {
            session.pendingInput.removeFirst(written)
            session.pump.commitInput(count: written, now: now)
            try? session.channel.notify()
        }
        let input = session.sinkSpec == .pty ? session.ptyChannel : session.client
        if session.pendingInput.isEmpty {
            input?.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            input?.read()
        } else {
            input?.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
    }

    // MARK: - Events from NIO handlers (on the loop)

    func guestNotified(_ key: ConsoleKey) {
        guard let session = sessions[key] else { return }
        if case .quarantine(let reason) = session.pump.notification(now: now) {
            quarantine(session, reason)
            return
        }
        service(key)
    }

    func clientInput(_ key: ConsoleKey, _ bytes: [UInt8], from channel: any Channel) {
        if sessions[key] == nil, let early = prepared[key] {
            // Held until the ring is mapped; past the limit the client is no longer read.
            early.pendingInput += bytes
            if early.pendingInput.count >= PreparedSink.inputLimit {
                channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
            }
            return
        }
        guard let session = sessions[key] else { return }
        session.pendingInput += bytes
        pushInput(session)
    }

    func clientAttached(_ key: ConsoleKey, _ channel: any Channel) {
        guard let session = sessions[key], !session.closed else {
            channel.close(promise: nil)
            return
        }
        if session.client != nil {
            refuseBusy(channel, name: session.name)
            return
        }
        session.client = channel
        session.pump.updateSink(session.sinkReadiness)
        service(key)
    }

    func refuseBusy(_ channel: any Channel, name: String) {
        let message = "conch: channel '\(name)' is busy: another client is attached\r\n"
        channel.writeAndFlush(channel.allocator.buffer(string: message)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func clientDetached(_ key: ConsoleKey, _ channel: any Channel) {
        guard let session = sessions[key], session.client === channel else { return }
        session.client = nil
        session.pendingInput.removeAll()
        session.pump.updateSink(session.sinkReadiness)
    }
}
