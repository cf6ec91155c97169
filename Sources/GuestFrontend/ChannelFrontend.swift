//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras
import XenABI
import XenHypervisor
import XenRing
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// A secondary console or channel, frontend side, following Linux's xenbus
/// handshake: grant a page to the backend, allocate an event channel, write
/// `ring-ref` and `port` in one transaction (retried on EAGAIN), switch to
/// Initialised (3), wait for the backend's Connected (4). Unlike hvc_xen, the
/// devid is the whole node name, so devids above 9 work.
public final class ChannelFrontend: @unchecked Sendable {
    public let devid: Int
    public let name: String?
    let frontendPath: String
    let ring: ConsoleRing<GuestPage>
    let channel: any EventChannelEndpoint
    let grant: GrantRef
    let pty: PseudoTerminal
    /// Linux 7.1's hvc_xen: output written while the page says DISCONNECTED is
    /// dropped (the write fails with `-ENOTCONN`) instead of waiting in the ring.
    let dropsWhileDisconnected: Bool
    private var relay: Thread?
    private let stopLock = NSLock()
    private var stopped = false

    /// Performs the frontend half of the handshake (up to state 3).
    public init(
        devid: Int,
        domainPath: String,
        hypervisor: any GuestHypervisor,
        store: XenstoreClient,
        frame: PageFrame,
        grant: GrantRef,
        grantTable: GuestPage,
        dropsWhileDisconnected: Bool = false
    ) async throws {
        self.devid = devid
        self.dropsWhileDisconnected = dropsWhileDisconnected
        frontendPath = "\(domainPath)/device/console/\(devid)"
        let backendDomid = DomID(UInt16(try await store.readString(frontendPath + "/backend-id")) ?? 0)
        name = try? await store.readString(frontendPath + "/name")
        let page = try hypervisor.mapOwnFrame(frame)
        page.write([UInt8](repeating: 0, count: XenPage.size), at: 0)
        GrantCheck.grantAccess(table: grantTable, ref: grant, grantee: backendDomid, frame: frame)
        self.grant = grant
        ring = ConsoleRing(memory: page)
        channel = try hypervisor.allocateUnbound(remote: backendDomid)
        pty = try PseudoTerminal()
        let (path, port, ref) = (frontendPath, channel.port.rawValue, grant.rawValue)
        try await store.transaction { transaction in
            try await store.write(path + "/ring-ref", "\(ref)", transaction: transaction)
            try await store.write(path + "/port", "\(port)", transaction: transaction)
        }
        try await store.write(frontendPath + "/state", "\(XenbusState.initialised.rawValue)")
    }

    /// The pty slave the guest program opens (`hvc<N>`).
    public var devicePath: String { pty.slavePath }

    /// Whether the backend connected and the relay runs.
    public var isRunning: Bool { stopLock.withLock { relay != nil } }

    /// Starts relaying between the pty and the ring (after the backend connected).
    /// Only the first call starts anything: the ring has exactly one writer, even
    /// when two xenstore scans see the backend connect at the same time.
    /// - Returns: whether this call started the relay.
    @discardableResult
    public func start() -> Bool {
        let thread: Thread? = stopLock.withLock {
            guard relay == nil else { return nil }
            let thread = Thread { [self] in relayLoop() }
            thread.name = "hvc\(devid)"
            relay = thread
            return thread
        }
        thread?.start()
        return thread != nil
    }

    public func stop() {
        stopLock.withLock { stopped = true }
        try? channel.notify()
    }

    private var isStopped: Bool { stopLock.withLock { stopped } }

    /// A full ring usually drains within microseconds while the backend is busy:
    /// poll the indices briefly before paying for a sleep and a wake-up (the
    /// spin-then-block mode of `conch bench ring`). Returns true once space appears.
    private func spinForSpace() -> Bool {
        for _ in 0..<2000 {
            if let free = try? ring.frontend.output.freeSpace(), free > 0 { return true }
        }
        return false
    }

    /// pty → `out` ring (a full ring waits on the event channel: backpressure to
    /// the program), `in` ring → pty.
    private func relayLoop() {
        let master = pty.master.rawValue
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !isStopped {
            if let input = try? ring.frontend.input.read(maxCount: ConsoleInterface.inSize), !input.isEmpty {
                try? channel.notify()
                var offset = 0
                while offset < input.count {
                    let written = input[offset...].withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
                    if written <= 0 { break }
                    offset += written
                }
            }
            if !pending.isEmpty, dropsWhileDisconnected, ring.connection.isDisconnected {
                pending.removeAll()
            }
            if !pending.isEmpty, let written = try? ring.frontend.output.write(pending), written > 0 {
                pending.removeFirst(written)
                try? channel.notify()
            }
            if !pending.isEmpty && spinForSpace() { continue }
            var fds = [
                pollfd(fd: channel.waitDescriptor, events: Int16(POLLIN), revents: 0),
                pollfd(fd: pending.isEmpty ? master : -1, events: Int16(POLLIN), revents: 0),
            ]
            guard poll(&fds, 2, 200) >= 0 else { continue }
            if fds[0].revents != 0 { _ = try? channel.consumePending() }
            if fds[1].revents & Int16(POLLIN) != 0 {
                let got = read(master, &buffer, buffer.count)
                if got > 0 { pending += buffer.prefix(got) }
            }
        }
    }
}
