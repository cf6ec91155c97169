//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Synchronization
import SystemExtras
import SystemPackage
import XenABI
import XenHypervisor
import XenMemory

#if canImport(Glibc)
import Glibc
#endif

/// A bound port in this process: notify writes the peer's eventfd directly.
public final class SimEventChannel: EventChannelEndpoint {
    public let port: EvtchnPort
    let notifier: EventNotifier
    let waiter: EventNotifier

    /// - Parameters:
    ///   - notifier: the eventfd the remote end waits on.
    ///   - waiter: the eventfd the remote end signals.
    public init(port: EvtchnPort, notifier: EventNotifier, waiter: EventNotifier) {
        self.port = port
        self.notifier = notifier
        self.waiter = waiter
    }

    public var waitDescriptor: Int32 { waiter.fileDescriptor.rawValue }
    public func notify() throws { try notifier.signal() }
    public func wait(timeoutMilliseconds: Int32) throws -> Bool {
        try waiter.wait(timeoutMilliseconds: timeoutMilliseconds) != nil
    }
    public func consumePending() throws -> Bool { try waiter.tryConsume() != nil }
}

/// A connection to the simulated hypervisor: privileged through `hypervisor.sock`,
/// or a guest's own connection inherited at fd 3. One request at a time.
public final class SimHypervisorClient: PrivilegedHypervisor, GuestHypervisor, RecoverableHypervisor,
    @unchecked Sendable
{
    /// The connection; replaced by ``reconnect()`` (privileged connections only).
    private let socket: Mutex<Int32>
    /// Where a privileged connection reconnects.
    private let socketPath: String?
    public let domid: DomID
    public let isPrivileged: Bool
    private let cachedStartInfo: StartInfo?

    /// Connects to `<run-dir>/hypervisor.sock` as privileged dom0.
    public static func connect(runDirectory: RunDirectory) throws -> SimHypervisorClient {
        let path = runDirectory.hypervisorSocket
        let fd: Int32
        do {
            fd = try UnixSocketPath.connect(path, type: Int32(SOCK_SEQPACKET.rawValue))
        } catch {
            throw HypervisorError.unavailable(
                "cannot connect to \(path): \(error) (is `conch hypervisor` or `conch up` running?)"
            )
        }
        return try SimHypervisorClient(socket: fd, path: path)
    }

    /// A guest's own connection: the descriptor in `$CONCH_HYPERVISOR_FD` (3).
    public static func guest(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws
        -> SimHypervisorClient
    {
        guard let text = environment["CONCH_HYPERVISOR_FD"], let fd = Int32(text) else {
            throw HypervisorError.unavailable("CONCH_HYPERVISOR_FD is not set: this program was not started as a guest")
        }
        // Ours alone: programs the guest starts do not inherit the domain's connection.
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return try SimHypervisorClient(socket: fd, path: nil)
    }

    private init(socket: Int32, path: String?) throws {
        self.socket = Mutex(socket)
        self.socketPath = path
        let (identity, _) = try Self.exchange(socket, .identify)
        guard case .identity(let domid, let privileged) = identity else {
            throw HypervisorError.unavailable("unexpected answer to identify")
        }
        self.domid = domid
        self.isPrivileged = privileged
        if !privileged, case .startInfo(let info) = try Self.exchange(socket, .startInfo).0 {
            cachedStartInfo = info
        } else {
            cachedStartInfo = nil
        }
    }

    deinit { Glibc.close(socket.withLock { $0 }) }

    private static func exchange(_ socket: Int32, _ request: SimRequest) throws -> (SimResponse, [FileDescriptor]) {
        try SimWire.send(request, on: socket)
        guard let reply = try SimWire.receive(SimResponse.self, on: socket) else {
            throw HypervisorError.unavailable("the hypervisor closed the connection")
        }
        if case .error(let error) = reply.0 {
            for descriptor in reply.1 { try? descriptor.close() }
            throw error
        }
        return reply
    }

    private func call(_ request: SimRequest) throws -> (SimResponse, [FileDescriptor]) {
        try socket.withLock { socket in try Self.exchange(socket, request) }
    }

    // MARK: RecoverableHypervisor

    public func makeLossMonitor() throws -> Int32 {
        guard let socketPath else { throw HypervisorError.invalidArgument("a guest's connection cannot be monitored") }
        // A second connection that never sends: the hypervisor's exit ends its stream.
        return try UnixSocketPath.connect(socketPath, type: Int32(SOCK_SEQPACKET.rawValue))
    }

    public func reconnect() throws {
        guard let socketPath else { throw HypervisorError.invalidArgument("a guest's connection cannot reconnect") }
        let fd: Int32
        do {
            fd = try UnixSocketPath.connect(socketPath, type: Int32(SOCK_SEQPACKET.rawValue))
            guard case .identity(_, true) = try Self.exchange(fd, .identify).0 else {
                Glibc.close(fd)
                throw HypervisorError.unavailable("the hypervisor at \(socketPath) did not accept us as dom0")
            }
        } catch let error as HypervisorError {
            throw error
        } catch {
            throw HypervisorError.unavailable("cannot connect to \(socketPath): \(error)")
        }
        let old = socket.withLock { current in
            defer { current = fd }
            return current
        }
        Glibc.close(old)
    }

    private func expectOK(_ request: SimRequest) throws {
        guard case .ok = try call(request).0 else { throw HypervisorError.unavailable("unexpected answer") }
    }

    private func page(_ request: SimRequest) throws -> GuestPage {
        let (response, descriptors) = try call(request)
        guard case .page(let readOnly) = response, descriptors.count == 1 else {
            for descriptor in descriptors { try? descriptor.close() }
            throw HypervisorError.unavailable("unexpected answer to a page request")
        }
        defer { try? descriptors[0].close() }
        let mapping = try MappedMemory(fileDescriptor: descriptors[0], pageOffset: 0, pageCount: 1, writable: !readOnly)
        return GuestPage(region: mapping.region, isWritable: !readOnly, owner: mapping)
    }

    private func channel(_ request: SimRequest) throws -> any EventChannelEndpoint {
        let (response, descriptors) = try call(request)
        guard case .port(let port) = response, descriptors.count == 2 else {
            for descriptor in descriptors { try? descriptor.close() }
            throw HypervisorError.unavailable("unexpected answer to a port request")
        }
        return SimEventChannel(
            port: port,
            notifier: EventNotifier(adopting: descriptors[0]),
            waiter: EventNotifier(adopting: descriptors[1])
        )
    }

    // MARK: DomainControl

    public func createDomain(_ spec: DomainSpec) throws -> DomainInfo {
        guard case .domain(let info) = try call(.createDomain(spec)).0 else {
            throw HypervisorError.unavailable("unexpected answer to create")
        }
        return info
    }
    public func unpause(_ domid: DomID) throws { try expectOK(.unpause(domid)) }
    public func pause(_ domid: DomID) throws { try expectOK(.pause(domid)) }
    public func shutdown(_ domid: DomID, reason: ShutdownReason) throws { try expectOK(.shutdownDomain(domid, reason)) }
    public func destroy(_ domid: DomID) throws { try expectOK(.destroy(domid)) }
    public func listDomains() throws -> [DomainInfo] {
        guard case .domains(let list) = try call(.listDomains).0 else {
            throw HypervisorError.unavailable("unexpected answer to list")
        }
        return list
    }
    public func allocateUnboundPort(in domid: DomID, remote: DomID) throws -> EvtchnPort {
        guard case .port(let port) = try call(.allocateUnboundPort(domid: domid, remote: remote)).0 else {
            throw HypervisorError.unavailable("unexpected answer to alloc-unbound")
        }
        return port
    }

    // MARK: Memory

    public func mapForeign(_ domid: DomID, frame: PageFrame, readOnly: Bool) throws -> GuestPage {
        try page(.mapForeign(domid: domid, frame: frame, readOnly: readOnly))
    }
    public func mapGrant(_ domid: DomID, ref: GrantRef, readOnly: Bool) throws -> GuestPage {
        let mapped = try page(.mapGrant(domid: domid, ref: ref, readOnly: readOnly))
        guard !isPrivileged else { return mapped }
        // A guest's grant mappings count against its quota until it lets go of them.
        let release = GrantRelease { [weak self] in try? self?.expectOK(.unmapGrant) }
        return GuestPage(region: mapped.region, isWritable: mapped.isWritable, owner: GrantMapping(mapped, release))
    }
    public func mapOwnFrame(_ frame: PageFrame) throws -> GuestPage { try page(.mapOwnFrame(frame)) }

    // MARK: EventChannels

    public func allocateUnbound(remote: DomID) throws -> any EventChannelEndpoint {
        try channel(.allocateUnbound(remote: remote))
    }
    public func bindInterdomain(remote: DomID, remotePort: EvtchnPort) throws -> any EventChannelEndpoint {
        try channel(.bindInterdomain(remote: remote, remotePort: remotePort))
    }
    public func bindVirq(_ virq: Virq) throws -> any EventChannelEndpoint { try channel(.bindVirq(virq)) }
    public func attach(_ port: EvtchnPort) throws -> any EventChannelEndpoint { try channel(.attachPort(port)) }
    public func close(_ port: EvtchnPort) throws { try expectOK(.closePort(port)) }
    public func status(_ port: EvtchnPort) throws -> EventChannelStatus {
        guard case .portStatus(let status) = try call(.portStatus(port)).0 else {
            throw HypervisorError.unavailable("unexpected answer to a port status request")
        }
        return status
    }

    // MARK: Console

    public func consoleWrite(_ bytes: [UInt8]) throws {
        var offset = 0
        repeat {
            let end = min(bytes.count, offset + SimWire.consoleChunk)
            try expectOK(.consoleWrite(Data(bytes[offset..<end])))
            offset = end
        } while offset < bytes.count
    }

    public func readConsole(clear: Bool) throws -> [UInt8] {
        var result: [UInt8] = []
        while true {
            guard case .console(let chunk, let remaining) = try call(.readConsole(from: result.count, clear: clear)).0
            else {
                throw HypervisorError.unavailable("unexpected answer to a console read")
            }
            result += chunk
            if remaining == 0 || chunk.isEmpty { return result }
        }
    }

    // MARK: Guest

    public var startInfo: StartInfo {
        guard let cachedStartInfo else { preconditionFailure("startInfo is for guest connections") }
        return cachedStartInfo
    }

    public func requestShutdown(_ reason: ShutdownReason) throws { try expectOK(.requestShutdown(reason)) }
}

/// Tells the hypervisor a guest's grant mapping is gone, when the last reference goes.
private final class GrantRelease: Sendable {
    let release: @Sendable () -> Void
    init(_ release: @escaping @Sendable () -> Void) { self.release = release }
    deinit { release() }
}

/// A guest's grant mapping: the page and its release, unmapped and released together.
private final class GrantMapping: Sendable {
    let page: GuestPage
    let release: GrantRelease
    init(_ page: GuestPage, _ release: GrantRelease) {
        self.page = page
        self.release = release
    }
}
