//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import XenABI
import XenRing

/// Console 0's frontend: Conch's `FrontendConsole` core (the same one the
/// simulator's guest runs) deciding, Xen's console ring and event channel doing.
///
/// In the new mode a write while the page says DISCONNECTED never touches the
/// ring and never waits: it goes to Xen's console (`console_io`; a non-debug Xen
/// refuses a domU) and into the core's bounded boot history, which is replayed
/// into the ring, in order and under a marker naming any drops, once a backend
/// marks the page CONNECTED. Backends do not notify when they do, so
/// ``flushIfConnected()`` is called as the kernel polls.
struct ConsoleFrontend {
    let ring: ConsoleRing<GuestPage>
    let port: UInt32
    var core: FrontendConsole
    /// What `console_io` answered the first time: 0 allowed, negative refused.
    var consoleIOResult: Int?
    /// Nanoseconds spent waiting for ring space (a stall).
    var stalledNanoseconds: UInt64 = 0
    /// Bytes dropped (Linux 7.1's mode while disconnected, or an invalid ring).
    var droppedBytes = 0

    init(page: GuestPage, port: UInt32, mode: FrontendMode) {
        ring = ConsoleRing(memory: page)
        self.port = port
        core = FrontendConsole(mode: mode, historyCapacity: 64 * 1024)
    }

    /// Writes `bytes` as the mode says: into the ring, to Xen's console and the
    /// history, or nowhere.
    mutating func write(_ bytes: [UInt8]) {
        var pending = bytes[...]
        while true {
            let free = try? ring.frontend.output.freeSpace()
            switch core.nextAction(pending: pending, flag: ring.connection, freeSpace: free) {
            case .hypervisorConsole:
                let result = pending.withUnsafeBytes { Xen.consoleWrite($0) }
                if consoleIOResult == nil { consoleIOResult = result }
                pending = []
            case .ring(let count):
                let written = (try? ring.frontend.output.write(pending.prefix(count))) ?? 0
                pending = pending.dropFirst(written)
                Xen.notify(port)
            case .replay(let chunk):
                _ = try? ring.frontend.output.write(chunk)
                Xen.notify(port)
            case .waitForSpace:
                waitForTheBackend(nanoseconds: 10_000_000)
            case .yieldAndRetry:
                // hvc_xen's way, here with a bounded sleep instead of a bare yield.
                waitForTheBackend(nanoseconds: 1_000_000)
            case .discard:
                droppedBytes += pending.count
                pending = []
            case .done:
                return
            }
        }
    }

    /// Replays the boot history once the page says CONNECTED.
    mutating func flushIfConnected() { write([]) }

    /// Bytes typed at the console (consumed; the backend is told).
    mutating func readInput() -> [UInt8] {
        guard let bytes = try? ring.frontend.input.read(maxCount: 1024), !bytes.isEmpty else { return [] }
        Xen.notify(port)
        return bytes
    }

    /// Clears the port, then sleeps until it fires or the time passes: the backend
    /// notifies after it consumes, so no wake-up is lost between check and sleep.
    mutating func waitForTheBackend(nanoseconds: UInt64) {
        let start = Xen.now()
        Xen.clearPending(port)
        if let free = try? ring.frontend.output.freeSpace(), free > 0 { return }
        Xen.wait(ports: [port], nanoseconds: nanoseconds)
        stalledNanoseconds &+= Xen.now() &- start
    }
}
