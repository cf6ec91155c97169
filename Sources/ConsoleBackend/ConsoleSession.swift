//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import NIOCore
import SystemExtras
import XenABI
import XenHypervisor
import XenRing

#if canImport(Glibc)
import Glibc
#endif

/// Where a console's bytes go on the host side.
enum SinkSpec: Equatable {
    case pty
    case socket(path: String)
}

/// A channel's sink published before its frontend connected; the session that
/// maps the ring adopts it. Confined to the daemon's event loop.
final class PreparedSink {
    /// Input held before the ring exists; past this the client is not read.
    static let inputLimit = 64 * 1024

    let spec: SinkSpec
    /// A pty channel's pty, and the input typed into it so far (socket channels'
    /// clients wait in the keeper).
    var pty: PseudoTerminal?
    var ptyChannel: (any Channel)?
    var pendingInput: [UInt8] = []

    init(spec: SinkSpec) { self.spec = spec }
}

/// One served console: its mapped ring and event channel, its sink, its log and
/// its pump. Confined to the daemon's event loop.
final class ConsoleSession {
    let key: ConsoleKey
    let name: String
    let sinkSpec: SinkSpec
    let ring: ConsoleRing<GuestPage>
    let channel: any EventChannelEndpoint
    var pump: ConsolePump
    var log: ConsoleLogFile?

    /// The eventfd watcher for the guest's notifications.
    var notifications: (any Channel)?
    /// pty: the master; socket: the keeper's data stream for the channel (the
    /// keeper holds the listener and the client).
    var pty: PseudoTerminal?
    var ptyChannel: (any Channel)?
    var client: (any Channel)?
    /// Client bytes waiting for space in the `in` ring.
    var pendingInput: [UInt8] = []
    /// A channel write whose completion has not been seen: output waits for it.
    var writeInFlight = false
    var rateTimerArmed = false
    /// The output loop is running: a nested call (NIO completes writes and reports
    /// writability synchronously, from inside the loop) only asks for another pass.
    var pumping = false
    var pumpAgain = false
    var closed = false

    init(
        key: ConsoleKey,
        name: String,
        sinkSpec: SinkSpec,
        page: GuestPage,
        channel: any EventChannelEndpoint,
        pump: ConsolePump
    ) {
        self.key = key
        self.name = name
        self.sinkSpec = sinkSpec
        self.ring = ConsoleRing(memory: page)
        self.channel = channel
        self.pump = pump
    }

    /// The channel output goes to now (pty master or the socket client).
    var outputChannel: (any Channel)? {
        switch sinkSpec {
        case .pty: ptyChannel
        case .socket: client
        }
    }

    var sinkReadiness: SinkReadiness {
        if closed { return .closed }
        guard let output = outputChannel else { return .waitingForClient }
        if output.isWritable { return .connected(canAccept: Int.max) }
        // Console 0's pty fills up when nobody reads its slave; that must never
        // stall the guest (the log and the history take the output). A channel's
        // slow reader, on the other hand, is backpressure.
        return key.devid == 0 ? .waitingForClient : .connected(canAccept: 0)
    }

    var snapshot: RingSnapshot {
        let output = ring.backend.input.rawIndices  // the guest's out[]
        let input = ring.backend.output.rawIndices  // the guest's in[]
        return RingSnapshot(
            outProd: output.producer,
            outCons: output.consumer,
            inProd: input.producer,
            inCons: input.consumer,
            connection: ring.connection.rawValue
        )
    }

    /// What `conch stats` shows for this console.
    var stats: ConsoleStats {
        ConsoleStats(
            domid: key.domid.rawValue,
            devid: key.devid,
            name: name,
            connection: {
                switch sinkSpec {
                case .pty: "pty"
                case .socket: "socket"
                }
            }(),
            path: {
                switch sinkSpec {
                case .pty: pty?.slavePath
                case .socket(let path): path
                }
            }(),
            counters: pump.counters
        )
    }
}
