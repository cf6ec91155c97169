//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Hypervisors
import SystemExtras
import Toolstack
import XenABI
import XenHypervisor
import XenSim
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// A toolstack operation that cannot go on, with a message for the person who
/// asked: what is wrong and, where it is obvious, what to do.
public struct ToolstackError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What the toolstack commands talk to: the hypervisor and xenstored of one run
/// directory.
public struct HostConnection {
    public let runDirectory: RunDirectory
    public let hypervisor: any PrivilegedHypervisor
    public let store: XenstoreClient
    /// A real Xen dom0 (names come from xenstore; no toolstack records).
    public var onXen = false

    /// consoled's home on a Xen host unless a run directory is given.
    public static let xenRunDirectory = "/var/run/conch"

    public init(
        runDirectory: RunDirectory,
        hypervisor: any PrivilegedHypervisor,
        store: XenstoreClient,
        onXen: Bool = false
    ) {
        self.runDirectory = runDirectory
        self.hypervisor = hypervisor
        self.store = store
        self.onXen = onXen
    }

    public var builder: DomainBuilder { DomainBuilder(hypervisor: hypervisor, store: store) }

    /// The host's daemons on a real Xen dom0: Xen itself, the host's xenstored
    /// where Xen's tools find it, and consoled's sockets in its run directory.
    public static func openXen(runDirectory: RunDirectory?) async throws -> HostConnection {
        let hypervisor = try HypervisorFactory.privileged(.xen)
        let socket = XenstoreClient.defaultSocketPath()
        let store: XenstoreClient
        do {
            store = try await XenstoreClient.connect(socketPath: socket)
        } catch {
            throw ToolstackError("cannot reach the host's xenstored at \(socket) (\(error))")
        }
        return HostConnection(
            runDirectory: runDirectory ?? RunDirectory(path: Self.xenRunDirectory),
            hypervisor: hypervisor,
            store: store,
            onXen: true
        )
    }

    /// The host `backend` names: the simulator in its run directory, or the real
    /// Xen this process runs under (with consoled's sockets in `explicitRunDirectory`
    /// if given, else in ``xenRunDirectory``).
    public static func open(
        _ backend: HypervisorFactory.Backend,
        explicitRunDirectory: String?
    ) async throws -> HostConnection {
        switch backend {
        case .xen: try await openXen(runDirectory: explicitRunDirectory.map { RunDirectory(path: $0) })
        case .simulated(let runDirectory): try await open(runDirectory)
        }
    }

    /// A guest by name or domid, on either host.
    public func guest(_ reference: String) async throws -> DomainInfo {
        onXen ? try await namedDomain(reference) : try domain(reference)
    }

    public static func open(_ runDirectory: RunDirectory) async throws -> HostConnection {
        let hypervisor: any PrivilegedHypervisor
        do {
            hypervisor = try HypervisorFactory.privileged(.simulated(runDirectory))
        } catch {
            throw ToolstackError(
                "no host stack in \(runDirectory.path) (nothing answers on hypervisor.sock): start it with "
                    + "`conch up --detach`, or pass the right --run-dir"
            )
        }
        let store: XenstoreClient
        do {
            store = try await XenstoreClient.connect(socketPath: runDirectory.xenstoredSocket)
        } catch {
            throw ToolstackError(
                "cannot reach xenstored at \(runDirectory.xenstoredSocket) (\(error)): start the host stack with "
                    + "`conch up --detach`"
            )
        }
        return HostConnection(runDirectory: runDirectory, hypervisor: hypervisor, store: store)
    }

    /// A domain by name or domid, as xl takes them.
    public func domain(_ reference: String) throws -> DomainInfo {
        if let found = Self.find(reference, in: try hypervisor.listDomains()) { return found }
        if reference == "0" || reference == "Domain-0" {
            throw ToolstackError("Domain-0 is the host itself: name a guest (see `conch list`)")
        }
        throw ToolstackError("no domain named or numbered '\(reference)': see `conch list`")
    }

    /// A domain by name or domid where the hypervisor knows ids only (real Xen):
    /// names are the toolstack's, in `/local/domain/<d>/name`, as `xl` reads them.
    public func namedDomain(_ reference: String) async throws -> DomainInfo {
        if let found = Self.find(reference, in: try await guests()) { return found }
        throw ToolstackError("no guest named or numbered '\(reference)': see `xl list`")
    }

    /// Every guest (not dom0), named: by the simulator's records, or on real Xen by
    /// the toolstack's `/local/domain/<d>/name`, as `xl list` reads them.
    public func guests() async throws -> [DomainInfo] {
        var domains = try hypervisor.listDomains().filter { $0.domid != .dom0 }
        for index in domains.indices where domains[index].name.isEmpty {
            let home = ConsoleLayout.home(domains[index].domid)
            domains[index].name = (try? await store.readString(home + "/name")) ?? ""
        }
        return domains
    }

    /// The domain `reference` names: a domid first, else a name.
    public static func find(_ reference: String, in domains: [DomainInfo]) -> DomainInfo? {
        if let number = UInt16(reference), let found = domains.first(where: { $0.domid.rawValue == number }) {
            return found
        }
        return domains.first { $0.name == reference }
    }

    /// The toolstack's record of `domain`, with the hypervisor's current view.
    public func built(_ domain: DomainInfo) throws -> (DomainRecord, DomainBuilder.Built) {
        guard let record = DomainRecord.load(runDirectory: runDirectory.path, domid: domain.domid.rawValue) else {
            throw ToolstackError(
                "domain \(domain.domid) (\(domain.name)) was not created by `conch create` in \(runDirectory)"
            )
        }
        return (record, DomainBuilder.Built(domain: domain, plan: record.plan))
    }

    /// A domain's channels by name, with their devids, from the toolstack's dom0-only
    /// `/libxl` copy (never from a node the guest can write).
    public func channels(_ domid: UInt16) async -> [(name: String, devid: Int)] {
        let d = DomID(domid)
        var found: [(name: String, devid: Int)] = []
        for entry in (try? await store.directory(ConsoleLayout.toolstackCopies(d))) ?? [] {
            guard let devid = Int(entry), devid > 0 else { continue }
            let name = try? await store.readString(ConsoleLayout.toolstackCopy(d, devid: devid) + "/name")
            if let name, !name.isEmpty { found.append((name, devid)) }
        }
        return found
    }

    public func channelNames(_ domid: UInt16) async -> [String] { await channels(domid).map(\.name).sorted() }

    /// A domain's channels as `xl channel-list` shows them, read as libxl does
    /// since XSA-178: the list comes from the toolstack's dom0-only `/libxl` copy
    /// (consoles without a name are not channels), the backend domid from parsing
    /// the backend path recorded there, and only the live state (`state`, `port`,
    /// `ring-ref`, `tty`) from the frontend directory, whose path is derived.
    /// Rows are numbered 0, 1, 2… in directory order.
    public func channelEntries(_ domid: UInt16) async -> [ChannelListEntry] {
        let d = DomID(domid)
        var entries: [ChannelListEntry] = []
        for entry in (try? await store.directory(ConsoleLayout.toolstackCopies(d))) ?? [] {
            guard let devid = Int(entry), devid > 0 else { continue }
            let copy = ConsoleLayout.toolstackCopy(d, devid: devid)
            guard let name = try? await store.readString(copy + "/name"), !name.isEmpty else { continue }
            let backend = try? await store.readString(copy + "/backend")
            let frontend = ConsoleLayout.frontend(d, devid: devid)
            var nodes: [String: String] = [:]
            for node in ["state", "port", "ring-ref", "tty"] {
                nodes[node] = try? await store.readString("\(frontend)/\(node)")
            }
            let connection = try? await store.readString(copy + "/connection")
            entries.append(
                ChannelListEntry(
                    index: entries.count,
                    backendPath: backend,
                    frontendNodes: nodes,
                    connection: connection
                )
            )
        }
        return entries
    }

    /// Whether the process in `pidFile` is alive.
    public static func isRunning(pidFile: String) -> Bool {
        guard let pid = PidFile(path: pidFile).read() else { return false }
        return kill(pid, 0) == 0
    }
}
