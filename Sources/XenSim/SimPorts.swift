//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemExtras
import XenABI
import XenHypervisor

/// Event channels: every port of every domain. A port pair shares two eventfds,
/// one per direction, created when the first end is allocated; each end gets
/// (notify = the other end's wake-up, wait = its own), so a notify never passes
/// through the hypervisor.
struct SimPorts {
    final class Port {
        enum Kind {
            case unbound(remote: DomID)
            case interdomain(remote: DomID, remotePort: EvtchnPort)
            case virq(Virq)
        }

        let owner: DomID
        let number: EvtchnPort
        var kind: Kind
        /// Written by this end to wake the remote end.
        let toRemote: EventNotifier
        /// Read by this end; written by the remote end (or the hypervisor for a VIRQ).
        let fromRemote: EventNotifier
        /// The privileged connection that allocated or bound it, if any: closing
        /// that connection closes the port.
        var connection: Int?

        init(owner: DomID, number: EvtchnPort, kind: Kind, toRemote: EventNotifier, fromRemote: EventNotifier) {
            self.owner = owner
            self.number = number
            self.kind = kind
            self.toRemote = toRemote
            self.fromRemote = fromRemote
        }
    }

    struct Key: Hashable {
        let domid: DomID
        let port: EvtchnPort
    }

    private(set) var ports: [Key: Port] = [:]
    private var nextPort: [DomID: UInt32] = [:]
    /// Open ports per domain, and the most each may hold (a guest allocating
    /// ports costs the hypervisor two eventfds each). Domains without a limit
    /// (dom0) are bounded only by the process's descriptor limit.
    private var openCounts: [DomID: Int] = [:]
    private var limits: [DomID: Int] = [:]

    subscript(domid: DomID, port: EvtchnPort) -> Port? { ports[Key(domid: domid, port: port)] }

    mutating func setLimit(_ limit: Int, for domid: DomID) { limits[domid] = limit }

    /// A fresh port number in `domid`, if the domain is under its quota. Numbers
    /// are not reused while the domain lives, as a freed port may still be in a
    /// peer's hands; the quota counts open ports.
    private mutating func allocateNumber(in domid: DomID) throws(HypervisorError) -> EvtchnPort {
        if let limit = limits[domid], openCounts[domid, default: 0] >= limit {
            throw .invalidArgument("d\(domid.rawValue) already holds its \(limit) event channels (max_event_channels)")
        }
        let next = nextPort[domid, default: 1]
        guard next < UInt32(Int32.max) else { throw .invalidArgument("d\(domid.rawValue) ran out of port numbers") }
        nextPort[domid] = next + 1
        return EvtchnPort(next)
    }

    private mutating func insert(_ port: Port) {
        ports[Key(domid: port.owner, port: port.number)] = port
        openCounts[port.owner, default: 0] += 1
    }

    mutating func allocateUnbound(in domid: DomID, remote: DomID) throws -> Port {
        let port = Port(
            owner: domid,
            number: try allocateNumber(in: domid),
            kind: .unbound(remote: remote),
            toRemote: try EventNotifier(),
            fromRemote: try EventNotifier()
        )
        insert(port)
        return port
    }

    /// Binds a new port in `domid` to `remote`'s unbound `remotePort`, which must
    /// have been offered to `domid`.
    mutating func bindInterdomain(
        in domid: DomID,
        remote: DomID,
        remotePort: EvtchnPort
    ) throws(HypervisorError) -> Port {
        guard let other = self[remote, remotePort] else {
            throw .invalidArgument("d\(remote.rawValue) has no port \(remotePort.rawValue)")
        }
        guard case .unbound(let offeredTo) = other.kind else {
            throw .permissionDenied("port \(remotePort.rawValue) of d\(remote.rawValue) is not unbound")
        }
        guard offeredTo == domid else {
            throw .permissionDenied(
                "port \(remotePort.rawValue) of d\(remote.rawValue) is offered to d\(offeredTo.rawValue), not d\(domid.rawValue)"
            )
        }
        let port = Port(
            owner: domid,
            number: try allocateNumber(in: domid),
            kind: .interdomain(remote: remote, remotePort: remotePort),
            toRemote: other.fromRemote,
            fromRemote: other.toRemote
        )
        other.kind = .interdomain(remote: domid, remotePort: port.number)
        insert(port)
        return port
    }

    mutating func bindVirq(in domid: DomID, _ virq: Virq) throws -> Port {
        let signal = try EventNotifier()
        let port = Port(
            owner: domid,
            number: try allocateNumber(in: domid),
            kind: .virq(virq),
            toRemote: signal,
            fromRemote: signal
        )
        insert(port)
        return port
    }

    /// Closes a port. Its peer, if bound, goes back to unbound (as in Xen) and may
    /// be bound again; the closed end's process drops its descriptors, so it
    /// wakes nobody. (A process that kept them could only cause spurious wake-ups,
    /// which every reader tolerates by re-checking its ring.)
    @discardableResult
    mutating func close(_ domid: DomID, _ number: EvtchnPort) -> Port? {
        guard let port = ports.removeValue(forKey: Key(domid: domid, port: number)) else { return nil }
        openCounts[domid, default: 1] -= 1
        if case .interdomain(let remote, let remotePort) = port.kind, let peer = self[remote, remotePort] {
            peer.kind = .unbound(remote: domid)
            // Wake the survivor once so a waiter re-checks and finds nobody there.
            try? peer.fromRemote.signal()
        }
        return port
    }

    /// Every port of a dying domain.
    mutating func closeAll(of domid: DomID) {
        for key in ports.keys where key.domid == domid { close(domid, key.port) }
        nextPort[domid] = nil
        openCounts[domid] = nil
        limits[domid] = nil
    }

    /// Ports allocated through one privileged connection.
    mutating func closeAll(ofConnection connection: Int) {
        for (key, port) in ports where port.connection == connection { close(key.domid, key.port) }
    }

    func status(_ domid: DomID, _ number: EvtchnPort) -> EventChannelStatus {
        guard let port = self[domid, number] else { return .closed }
        switch port.kind {
        case .unbound(let remote): return .unbound(remote: remote)
        case .interdomain(let remote, let remotePort): return .interdomain(remote: remote, remotePort: remotePort)
        case .virq(let virq): return .virq(virq)
        }
    }

    /// Signals every binding of `virq`.
    func raise(_ virq: Virq) {
        for port in ports.values {
            if case .virq(let bound) = port.kind, bound == virq { try? port.toRemote.signal() }
        }
    }
}
