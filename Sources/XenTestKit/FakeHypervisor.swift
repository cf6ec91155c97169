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
import XenMemory
import XenRing
import XenSim

/// An in-process hypervisor for unit tests of the layers above the seam (consoled,
/// the guest kernel, the toolstack): heap pages instead of memfds, eventfd pairs
/// for event channels, no processes. The same grant checks as the real one.
///
/// ```swift
/// let fake = FakeHypervisor()
/// let dom0 = fake.privileged()
/// let info = try dom0.createDomain(DomainSpec(name: "t", uuid: "u", program: "/bin/true"))
/// let guest = fake.guest(info.domid)
/// ```
public final class FakeHypervisor: @unchecked Sendable {
    private let lock = NSLock()
    private var domains: [DomID: FakeDomain] = [:]
    private var nextDomid: UInt16 = 1
    private var ports: [PortKey: FakePort] = [:]
    private var nextPort: [DomID: UInt32] = [:]
    private var console = [UInt8]()

    public init() {}

    final class FakeDomain {
        let info: DomainInfo
        let frames: [HeapPage]
        var state: DomainRunState = .paused
        init(info: DomainInfo, frames: [HeapPage]) {
            self.info = info
            self.frames = frames
        }
    }

    struct PortKey: Hashable {
        let domid: DomID
        let port: EvtchnPort
    }

    final class FakePort {
        var status: EventChannelStatus
        let toRemote: EventNotifier
        let fromRemote: EventNotifier
        init(status: EventChannelStatus, toRemote: EventNotifier, fromRemote: EventNotifier) {
            self.status = status
            self.toRemote = toRemote
            self.fromRemote = fromRemote
        }
    }

    /// dom0's view (privileged).
    public func privileged() -> any PrivilegedHypervisor { View(fake: self, domid: .dom0) }

    /// A guest's view (unprivileged: privileged calls are refused).
    public func guest(_ domid: DomID) -> any GuestHypervisor { View(fake: self, domid: domid) }

    /// Every byte written with `consoleWrite`, prefixed as the real one does.
    public var consoleText: String { lock.withLock { String(decoding: console, as: UTF8.self) } }

    fileprivate func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    fileprivate func domain(_ domid: DomID) throws(HypervisorError) -> FakeDomain {
        guard let domain = domains[domid] else { throw .noSuchDomain(domid) }
        return domain
    }

    fileprivate func allocatePort(in domid: DomID, status: EventChannelStatus) throws -> (EvtchnPort, FakePort) {
        let number = EvtchnPort(nextPort[domid, default: 1])
        nextPort[domid] = number.rawValue + 1
        let port = FakePort(status: status, toRemote: try EventNotifier(), fromRemote: try EventNotifier())
        ports[PortKey(domid: domid, port: number)] = port
        return (number, port)
    }

    fileprivate func create(_ spec: DomainSpec) throws -> DomainInfo {
        let domid = DomID(nextDomid)
        nextDomid += 1
        let frames = (0..<max(spec.pageCount, 4)).map { _ in HeapPage() }
        let (consolePort, _) = try allocatePort(in: domid, status: .unbound(remote: spec.consoleBackend))
        let (storePort, _) = try allocatePort(in: domid, status: .unbound(remote: spec.xenstoreDomain))
        let start = StartInfo(
            domid: domid,
            name: spec.name,
            pageCount: frames.count,
            grantTableFrame: PageFrame(0),
            consoleFrame: PageFrame(1),
            consolePort: consolePort,
            xenstoreFrame: PageFrame(2),
            xenstorePort: storePort,
            firstFreeFrame: PageFrame(3)
        )
        GrantCheck.grantAccess(table: frames[0], ref: .console, grantee: spec.consoleBackend, frame: start.consoleFrame)
        GrantCheck.grantAccess(
            table: frames[0],
            ref: .xenstore,
            grantee: spec.xenstoreDomain,
            frame: start.xenstoreFrame
        )
        if !spec.legacyConsolePage { ConsoleRing(memory: frames[1]).connection = .disconnected }
        let info = DomainInfo(
            domid: domid,
            name: spec.name,
            uuid: spec.uuid,
            state: .paused,
            shutdownReason: nil,
            pid: nil,
            start: start
        )
        domains[domid] = FakeDomain(info: info, frames: frames)
        return info
    }

    /// One caller's view; privileged when it is dom0.
    private struct View: PrivilegedHypervisor, GuestHypervisor {
        let fake: FakeHypervisor
        let domid: DomID

        private func requirePrivilege() throws(HypervisorError) {
            guard domid == .dom0 else { throw .permissionDenied("needs the privileged interface (dom0)") }
        }

        private func page(_ memory: HeapPage, readOnly: Bool) -> GuestPage {
            GuestPage(region: memory.region, isWritable: !readOnly, owner: memory)
        }

        private func endpoint(_ number: EvtchnPort, _ port: FakePort) -> any EventChannelEndpoint {
            SimEventChannel(port: number, notifier: port.toRemote, waiter: port.fromRemote)
        }

        var startInfo: StartInfo {
            fake.locked {
                (try? fake.domain(domid).info.start) ?? .unknown(domid)
            }
        }

        func createDomain(_ spec: DomainSpec) throws -> DomainInfo {
            try requirePrivilege()
            return try fake.locked { try fake.create(spec) }
        }
        func unpause(_ target: DomID) throws {
            try requirePrivilege()
            try fake.locked { try fake.domain(target).state = .running }
        }
        func pause(_ target: DomID) throws {
            try requirePrivilege()
            try fake.locked { try fake.domain(target).state = .paused }
        }
        func shutdown(_ target: DomID, reason: ShutdownReason) throws {
            try requirePrivilege()
            try fake.locked { try fake.domain(target).state = .shutdown }
        }
        func destroy(_ target: DomID) throws {
            try requirePrivilege()
            try fake.locked {
                _ = try fake.domain(target)
                fake.domains[target] = nil
                for key in fake.ports.keys where key.domid == target { fake.ports[key] = nil }
            }
        }
        func listDomains() throws -> [DomainInfo] {
            try requirePrivilege()
            return fake.locked {
                fake.domains.keys.sorted().compactMap { domid in
                    fake.domains[domid].map { domain in
                        var info = domain.info
                        info.state = domain.state
                        return info
                    }
                }
            }
        }
        func allocateUnboundPort(in target: DomID, remote: DomID) throws -> EvtchnPort {
            try requirePrivilege()
            return try fake.locked {
                _ = try fake.domain(target)
                return try fake.allocatePort(in: target, status: .unbound(remote: remote)).0
            }
        }
        func mapForeign(_ target: DomID, frame: PageFrame, readOnly: Bool) throws -> GuestPage {
            try requirePrivilege()
            return try fake.locked {
                let frames = try fake.domain(target).frames
                guard frame.rawValue < UInt64(frames.count) else {
                    throw HypervisorError.invalidArgument("d\(target.rawValue) has no frame \(frame.rawValue)")
                }
                return page(frames[Int(frame.rawValue)], readOnly: readOnly)
            }
        }
        func mapGrant(_ target: DomID, ref: GrantRef, readOnly: Bool) throws -> GuestPage {
            try fake.locked {
                let frames = try fake.domain(target).frames
                let frame = try GrantCheck.frame(
                    table: frames[0],
                    granter: target,
                    ref: ref,
                    grantee: domid,
                    readOnly: readOnly,
                    frameCount: frames.count
                )
                return page(frames[Int(frame.rawValue)], readOnly: readOnly)
            }
        }
        func mapOwnFrame(_ frame: PageFrame) throws -> GuestPage {
            try fake.locked {
                let frames = try fake.domain(domid).frames
                guard frame.rawValue < UInt64(frames.count) else {
                    throw HypervisorError.invalidArgument("d\(domid.rawValue) has no frame \(frame.rawValue)")
                }
                return page(frames[Int(frame.rawValue)], readOnly: false)
            }
        }
        func allocateUnbound(remote: DomID) throws -> any EventChannelEndpoint {
            try fake.locked {
                let (number, port) = try fake.allocatePort(in: domid, status: .unbound(remote: remote))
                return endpoint(number, port)
            }
        }
        func bindInterdomain(remote: DomID, remotePort: EvtchnPort) throws -> any EventChannelEndpoint {
            try fake.locked {
                guard let other = fake.ports[PortKey(domid: remote, port: remotePort)],
                    case .unbound(let offered) = other.status, offered == domid
                else {
                    throw HypervisorError.permissionDenied(
                        "port \(remotePort.rawValue) of d\(remote.rawValue) is not offered to d\(domid.rawValue)"
                    )
                }
                let number = EvtchnPort(fake.nextPort[domid, default: 1])
                fake.nextPort[domid] = number.rawValue + 1
                let port = FakePort(
                    status: .interdomain(remote: remote, remotePort: remotePort),
                    toRemote: other.fromRemote,
                    fromRemote: other.toRemote
                )
                other.status = .interdomain(remote: domid, remotePort: number)
                fake.ports[PortKey(domid: domid, port: number)] = port
                return endpoint(number, port)
            }
        }
        func bindVirq(_ virq: Virq) throws -> any EventChannelEndpoint {
            try requirePrivilege()
            return try fake.locked {
                let (number, port) = try fake.allocatePort(in: domid, status: .virq(virq))
                return endpoint(number, port)
            }
        }
        func attach(_ number: EvtchnPort) throws -> any EventChannelEndpoint {
            try fake.locked {
                guard let port = fake.ports[PortKey(domid: domid, port: number)] else {
                    throw HypervisorError.permissionDenied("d\(domid.rawValue) owns no port \(number.rawValue)")
                }
                return endpoint(number, port)
            }
        }
        func close(_ number: EvtchnPort) throws {
            try fake.locked {
                guard let port = fake.ports.removeValue(forKey: PortKey(domid: domid, port: number)) else {
                    throw HypervisorError.permissionDenied("d\(domid.rawValue) owns no port \(number.rawValue)")
                }
                if case .interdomain(let remote, let remotePort) = port.status,
                    let peer = fake.ports[PortKey(domid: remote, port: remotePort)]
                {
                    peer.status = .unbound(remote: domid)
                    try? peer.fromRemote.signal()
                }
            }
        }
        func status(_ number: EvtchnPort) throws -> EventChannelStatus {
            fake.locked { fake.ports[PortKey(domid: domid, port: number)]?.status ?? .closed }
        }
        func consoleWrite(_ bytes: [UInt8]) throws {
            fake.locked { fake.console += Array("(d\(domid.rawValue)) ".utf8) + bytes }
        }
        func readConsole(clear: Bool) throws -> [UInt8] {
            try requirePrivilege()
            return fake.locked {
                defer { if clear { fake.console.removeAll() } }
                return fake.console
            }
        }
        func requestShutdown(_ reason: ShutdownReason) throws {
            try fake.locked { try fake.domain(domid).state = .shutdown }
        }
    }
}
