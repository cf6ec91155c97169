//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

#if RealXen
import CXen
import Foundation
import Synchronization
import SystemExtras
import XenABI
import XenHypervisor
import XenMemory

#if canImport(Glibc)
import Glibc
#endif

/// The hypervisor seam in a real Xen dom0, over Xen's own stable libraries
/// (`libxenevtchn`, `libxengnttab`, `libxenforeignmemory`, `libxenctrl`): what
/// xenstored and xenconsoled use, so Conch's daemons behave as theirs do.
///
/// Why the libraries and not the raw ioctls: they are the interface Xen
/// promises to keep stable across releases (the ioctls are Linux's and differ
/// elsewhere), and they handle the details the daemons would otherwise copy
/// (grant-map offsets, privcmd batches, restartable hypercalls).
///
/// Domains are created by `xl`, not here: ``createDomain(_:)`` refuses.
///
/// Event channels: one `xenevtchn` handle for the process, as cxenstored has;
/// a thread waits on it, and each bound port gets an eventfd that it signals
/// (then unmasks the port), so that every endpoint looks like the simulator's —
/// a descriptor to poll, NIO included.
public final class XenDom0Hypervisor: PrivilegedHypervisor, LocalXenstore, @unchecked Sendable {
    private let xc: OpaquePointer
    private let evtchn: OpaquePointer
    private let gnttab: OpaquePointer
    private let foreign: OpaquePointer
    private let bridge: EventBridge

    public init() throws {
        guard let xc = xc_interface_open(nil, nil, 0) else { throw Self.failure("xc_interface_open") }
        guard let evtchn = xenevtchn_open(nil, 0) else {
            xc_interface_close(xc)
            throw Self.failure("xenevtchn_open (is xen-evtchn loaded?)")
        }
        guard let gnttab = xengnttab_open(nil, 0) else {
            xc_interface_close(xc)
            xenevtchn_close(evtchn)
            throw Self.failure("xengnttab_open (is xen-gntdev loaded?)")
        }
        guard let foreign = xenforeignmemory_open(nil, 0) else {
            xc_interface_close(xc)
            xenevtchn_close(evtchn)
            xengnttab_close(gnttab)
            throw Self.failure("xenforeignmemory_open (is xen-privcmd loaded?)")
        }
        self.xc = xc
        self.evtchn = evtchn
        self.gnttab = gnttab
        self.foreign = foreign
        bridge = try EventBridge(handle: evtchn)
    }

    deinit {
        xenforeignmemory_close(foreign)
        xengnttab_close(gnttab)
        xenevtchn_close(evtchn)
        xc_interface_close(xc)
    }

    static func failure(_ what: String) -> HypervisorError {
        .unavailable("\(what) failed: \(String(cString: strerror(errno)))")
    }

    // MARK: DomainControl

    public func createDomain(_ spec: DomainSpec) throws -> DomainInfo {
        throw HypervisorError.invalidArgument("on a Xen host domains are created by the toolstack (xl create)")
    }

    public func unpause(_ domid: DomID) throws {
        guard xc_domain_unpause(xc, UInt32(domid.rawValue)) == 0 else { throw Self.failure("xc_domain_unpause") }
    }

    public func pause(_ domid: DomID) throws {
        guard xc_domain_pause(xc, UInt32(domid.rawValue)) == 0 else { throw Self.failure("xc_domain_pause") }
    }

    public func shutdown(_ domid: DomID, reason: ShutdownReason) throws {
        let code: Int32 =
            switch reason {
            case .poweroff: 0
            case .reboot: 1
            case .suspend: 2
            case .crash: 3
            case .watchdog: 4
            case .softReset: 5
            }
        guard xc_domain_shutdown(xc, UInt32(domid.rawValue), code) == 0 else {
            throw Self.failure("xc_domain_shutdown")
        }
    }

    public func destroy(_ domid: DomID) throws {
        guard xc_domain_destroy(xc, UInt32(domid.rawValue)) == 0 else { throw Self.failure("xc_domain_destroy") }
    }

    public func listDomains() throws -> [DomainInfo] {
        var result: [DomainInfo] = []
        var next: UInt32 = 0
        var batch = [xc_domaininfo_t](repeating: xc_domaininfo_t(), count: 256)
        while true {
            // SAFETY: libxenctrl fills at most `batch.count` entries of the array's storage.
            let count = xc_domain_getinfolist(xc, next, UInt32(batch.count), &batch)
            guard count >= 0 else { throw Self.failure("xc_domain_getinfolist") }
            for info in batch.prefix(Int(count)) { result.append(Self.domainInfo(info)) }
            guard Int(count) == batch.count, let last = batch.last else { return result }
            next = UInt32(last.domain) + 1
        }
    }

    static func domainInfo(_ info: xc_domaininfo_t) -> DomainInfo {
        let domid = DomID(info.domain)
        let flags = info.flags
        let state: DomainRunState
        var reason: ShutdownReason?
        if flags & UInt32(XEN_DOMINF_dying) != 0 {
            state = .dying
        } else if flags & UInt32(XEN_DOMINF_shutdown) != 0 {
            state = .shutdown
            let code = (flags >> UInt32(XEN_DOMINF_shutdownshift)) & UInt32(XEN_DOMINF_shutdownmask)
            reason = [.poweroff, .reboot, .suspend, .crash, .watchdog, .softReset][safe: Int(code)]
        } else if flags & UInt32(XEN_DOMINF_paused) != 0 {
            state = .paused
        } else {
            state = .running
        }
        let handle = withUnsafeBytes(of: info.handle) { Array($0) }
        let hex = handle.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        let uuid = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { range in
            String(hex.dropFirst(range.lowerBound).prefix(range.count))
        }.joined(separator: "-")
        return DomainInfo(
            domid: domid,
            name: "",
            uuid: uuid,
            state: state,
            shutdownReason: reason,
            pid: nil,
            start: .unknown(domid, pageCount: Int(truncatingIfNeeded: info.tot_pages))
        )
    }

    public func allocateUnboundPort(in domid: DomID, remote: DomID) throws -> EvtchnPort {
        let port = xc_evtchn_alloc_unbound(xc, UInt32(domid.rawValue), UInt32(remote.rawValue))
        guard port >= 0 else { throw Self.failure("xc_evtchn_alloc_unbound") }
        return EvtchnPort(UInt32(port))
    }

    // MARK: Memory

    public func mapForeign(_ domid: DomID, frame: PageFrame, readOnly: Bool) throws -> GuestPage {
        var pfn = xen_pfn_t(frame.rawValue)
        var error: Int32 = 0
        let protection = readOnly ? PROT_READ : PROT_READ | PROT_WRITE
        guard let base = xenforeignmemory_map(foreign, UInt32(domid.rawValue), protection, 1, &pfn, &error),
            error == 0
        else {
            throw HypervisorError.permissionDenied(
                "cannot map frame \(frame.rawValue) of d\(domid.rawValue): \(String(cString: strerror(error != 0 ? error : errno)))"
            )
        }
        // SAFETY: xenforeignmemory_map returned one page at `base`, valid until it is unmapped.
        return Self.mappedPage(base, readOnly: readOnly) { [foreign] in _ = xenforeignmemory_unmap(foreign, base, 1) }
    }

    /// A page Xen mapped at `base`, unmapped by `unmap` when its last user lets go.
    private static func mappedPage(
        _ base: UnsafeMutableRawPointer,
        readOnly: Bool,
        unmap: @escaping () -> Void
    ) -> GuestPage {
        GuestPage(
            region: RawMemoryRegion(base: base, byteCount: XenPage.size),
            isWritable: !readOnly,
            owner: Mapping(unmap)
        )
    }

    public func mapGrant(_ domid: DomID, ref: GrantRef, readOnly: Bool) throws -> GuestPage {
        let protection = readOnly ? PROT_READ : PROT_READ | PROT_WRITE
        guard let base = xengnttab_map_grant_ref(gnttab, UInt32(domid.rawValue), ref.rawValue, protection) else {
            throw HypervisorError.permissionDenied(
                "cannot map grant \(ref.rawValue) of d\(domid.rawValue): \(String(cString: strerror(errno)))"
            )
        }
        // SAFETY: xengnttab_map_grant_ref returned one page at `base`, valid until it is unmapped.
        return Self.mappedPage(base, readOnly: readOnly) { [gnttab] in _ = xengnttab_unmap(gnttab, base, 1) }
    }

    // MARK: EventChannels

    public func status(_ port: EvtchnPort) throws -> EventChannelStatus {
        var status = xc_evtchn_status_t()
        status.dom = 0x7FF0  // DOMID_SELF (a cast macro Swift cannot import)
        status.port = port.rawValue
        guard xc_evtchn_status(xc, &status) == 0 else { return .closed }
        switch Int32(status.status) {
        case EVTCHNSTAT_unbound: return .unbound(remote: DomID(status.u.unbound.dom))
        case EVTCHNSTAT_interdomain:
            return .interdomain(
                remote: DomID(status.u.interdomain.dom),
                remotePort: EvtchnPort(status.u.interdomain.port)
            )
        case EVTCHNSTAT_virq: return .virq(Virq(rawValue: status.u.virq))
        default: return .closed
        }
    }

    public func allocateUnbound(remote: DomID) throws -> any EventChannelEndpoint {
        let port = xenevtchn_bind_unbound_port(evtchn, UInt32(remote.rawValue))
        guard port >= 0 else { throw Self.failure("xenevtchn_bind_unbound_port") }
        return try bridge.endpoint(for: EvtchnPort(UInt32(port)))
    }

    public func bindInterdomain(remote: DomID, remotePort: EvtchnPort) throws -> any EventChannelEndpoint {
        let port = xenevtchn_bind_interdomain(evtchn, UInt32(remote.rawValue), remotePort.rawValue)
        guard port >= 0 else {
            throw HypervisorError.permissionDenied(
                "cannot bind port \(remotePort.rawValue) of d\(remote.rawValue): \(String(cString: strerror(errno)))"
            )
        }
        return try bridge.endpoint(for: EvtchnPort(UInt32(port)))
    }

    public func bindVirq(_ virq: Virq) throws -> any EventChannelEndpoint {
        let port = xenevtchn_bind_virq(evtchn, virq.rawValue)
        guard port >= 0 else { throw Self.failure("xenevtchn_bind_virq") }
        return try bridge.endpoint(for: EvtchnPort(UInt32(port)))
    }

    public func attach(_ port: EvtchnPort) throws -> any EventChannelEndpoint {
        throw HypervisorError.invalidArgument("dom0 has no builder-allocated ports to attach")
    }

    public func close(_ port: EvtchnPort) throws {
        bridge.forget(port)
        guard xenevtchn_unbind(evtchn, port.rawValue) == 0 else { throw Self.failure("xenevtchn_unbind") }
    }

    // MARK: HypervisorConsole

    public func consoleWrite(_ bytes: [UInt8]) throws {
        throw HypervisorError.invalidArgument("dom0 writes to Xen's console through its kernel (hvc0)")
    }

    public func readConsole(clear: Bool) throws -> [UInt8] {
        var buffer = [CChar](repeating: 0, count: 1 << 20)
        var count = UInt32(buffer.count)
        // SAFETY: libxenctrl writes at most `count` (the buffer's size) characters
        // into the buffer and sets `count` to how many it wrote.
        let result = buffer.withUnsafeMutableBufferPointer { pointer -> Int32 in
            xc_readconsolering(xc, pointer.baseAddress, &count, clear ? 1 : 0, 0, nil)
        }
        guard result == 0 else { throw Self.failure("xc_readconsolering") }
        return buffer.prefix(Int(count)).map { UInt8(bitPattern: $0) }
    }

    // MARK: LocalXenstore

    public func localXenstoreRing() throws -> (page: GuestPage, port: EvtchnPort)? {
        try XenHost.localXenstoreRing()
    }
}

/// Turns the process's one event-channel handle into one eventfd per port.
private final class EventBridge: @unchecked Sendable {
    private let handle: OpaquePointer
    private let ports = Mutex<[UInt32: EventNotifier]>([:])

    init(handle: OpaquePointer) throws {
        self.handle = handle
        let thread = Thread { [self] in run() }
        thread.name = "xen-evtchn"
        thread.start()
    }

    func endpoint(for port: EvtchnPort) throws -> any EventChannelEndpoint {
        let wake = try EventNotifier()
        ports.withLock { $0[port.rawValue] = wake }
        return XenEventChannel(port: port, handle: handle, wake: wake)
    }

    func forget(_ port: EvtchnPort) {
        _ = ports.withLock { $0.removeValue(forKey: port.rawValue) }
    }

    private func run() {
        let fd = xenevtchn_fd(handle)
        while true {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, -1) > 0 else { continue }
            let pending = xenevtchn_pending(handle)
            guard pending >= 0 else { continue }
            let port = UInt32(pending)
            if let wake = ports.withLock({ $0[port] }) { try? wake.signal() }
            _ = xenevtchn_unmask(handle, port)
        }
    }
}

/// A bound port: notify is the hypercall; waiting is on the bridge's eventfd.
private final class XenEventChannel: EventChannelEndpoint, @unchecked Sendable {
    let port: EvtchnPort
    private let handle: OpaquePointer
    private let wake: EventNotifier

    init(port: EvtchnPort, handle: OpaquePointer, wake: EventNotifier) {
        self.port = port
        self.handle = handle
        self.wake = wake
    }

    var waitDescriptor: Int32 { wake.fileDescriptor.rawValue }

    func notify() throws {
        guard xenevtchn_notify(handle, port.rawValue) == 0 else { throw XenDom0Hypervisor.failure("xenevtchn_notify") }
    }

    func wait(timeoutMilliseconds: Int32) throws -> Bool {
        try wake.wait(timeoutMilliseconds: timeoutMilliseconds) != nil
    }

    func consumePending() throws -> Bool { try wake.tryConsume() != nil }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
#endif
