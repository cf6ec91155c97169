//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Synchronization
import XenABI
import XenHypervisor
import XenRing

#if canImport(Glibc)
import Glibc
#endif

/// The guest's console 0 frontend (hvc_xen's domU path). Every write reads the
/// `connection` flag first: DISCONNECTED sends the bytes to the hypervisor console
/// if the hypervisor permits it (and keeps the last 64 KiB for replay either way);
/// connected writes the ring, and a full ring waits on the event channel.
/// ``FrontendConsole`` makes each decision.
public final class ConsoleZeroFrontend: @unchecked Sendable {
    let ring: ConsoleRing<GuestPage>
    let channel: any EventChannelEndpoint
    let hypervisor: any HypervisorConsole
    private let core: Mutex<FrontendConsole>
    /// Serialises writers (the relay thread and the kernel's own boot messages),
    /// and remembers whether the hypervisor refused `console_io` (Xen's default
    /// policy for a domU): then the boot history alone keeps the output.
    private let writeLock = Mutex(false)
    /// Called with bytes the backend wrote into `in` (keyboard input).
    public var onInput: (@Sendable ([UInt8]) -> Void)?

    public init(
        page: GuestPage,
        channel: any EventChannelEndpoint,
        hypervisor: any HypervisorConsole,
        mode: FrontendMode
    ) {
        self.ring = ConsoleRing(memory: page)
        self.channel = channel
        self.hypervisor = hypervisor
        self.core = Mutex(FrontendConsole(mode: mode))
    }

    public var mode: FrontendMode { core.withLock { $0.mode } }

    /// Writes console output, blocking while the ring is full (never while the
    /// backend is disconnected in flag-aware mode). An empty write only gives a
    /// pending boot-history replay its chance to run.
    public func write(_ bytes: [UInt8]) {
        writeLock.withLock { consoleIORefused in
            var pending = bytes[...]
            while true {
                let free = try? ring.frontend.output.freeSpace()
                let action = core.withLock { $0.nextAction(pending: pending, flag: ring.connection, freeSpace: free) }
                switch action {
                case .done:
                    return
                case .hypervisorConsole:
                    // The core kept the bytes in the boot history: a refused console_io
                    // loses nothing, they are replayed once a backend connects.
                    guard !consoleIORefused else { return }
                    do {
                        try hypervisor.consoleWrite(Array(pending))
                    } catch HypervisorError.permissionDenied {
                        consoleIORefused = true
                    } catch {}
                    return
                case .ring(let count):
                    let written = (try? ring.frontend.output.write(pending.prefix(count))) ?? 0
                    pending = pending.dropFirst(written)
                    try? channel.notify()
                case .replay(let chunk):
                    _ = try? ring.frontend.output.write(chunk)
                    try? channel.notify()
                case .waitForSpace:
                    // Sleep on the event channel; wake at least every 100 ms to
                    // re-read the flag (a backend that goes away says so there).
                    _ = try? channel.wait(timeoutMilliseconds: 100)
                    drainInput()
                case .yieldAndRetry:
                    sched_yield()
                    usleep(200)
                    drainInput()
                case .discard:
                    return
                }
            }
        }
    }

    /// Delivers whatever the backend put into `in` to ``onInput``.
    public func drainInput() {
        guard let bytes = try? ring.frontend.input.read(maxCount: ConsoleInterface.inSize), !bytes.isEmpty else {
            return
        }
        try? channel.notify()
        onInput?(bytes)
    }

    /// One round of the relay: after a notification or a timeout, take input and
    /// let a pending replay run.
    public func poll() {
        drainInput()
        write([])
    }
}
