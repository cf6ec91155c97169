//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras
import Toolstack
import ToolstackRuntime
import XenABI
import XenHypervisor
import XenSim
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// A command-line failure: printed as `Error: <message>` and exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What the toolstack commands talk to: the hypervisor and xenstored of one run
/// directory.
struct HostConnection {
    let runDirectory: RunDirectory
    let hypervisor: any PrivilegedHypervisor
    let store: XenstoreClient

    var builder: DomainBuilder { DomainBuilder(hypervisor: hypervisor, store: store) }

    static func open(_ runDirectory: RunDirectory) async throws -> HostConnection {
        let hypervisor: any PrivilegedHypervisor
        do {
            hypervisor = try HypervisorFactory.privileged(.simulated(runDirectory))
        } catch {
            throw CLIError(
                "no hypervisor at \(runDirectory.hypervisorSocket) (\(error)): start the host stack with "
                    + "`conch up --detach`, or pass the right --run-dir"
            )
        }
        let store: XenstoreClient
        do {
            store = try await XenstoreClient.connect(socketPath: runDirectory.xenstoredSocket)
        } catch {
            throw CLIError(
                "cannot reach xenstored at \(runDirectory.xenstoredSocket) (\(error)): start the host stack with "
                    + "`conch up --detach`"
            )
        }
        return HostConnection(runDirectory: runDirectory, hypervisor: hypervisor, store: store)
    }

    /// A domain by name or domid, as xl takes them.
    func domain(_ reference: String) throws -> DomainInfo {
        if let found = Self.find(reference, in: try hypervisor.listDomains()) { return found }
        if reference == "0" || reference == "Domain-0" {
            throw CLIError("Domain-0 is the host itself: name a guest (see `conch list`)")
        }
        throw CLIError("no domain named or numbered '\(reference)': see `conch list`")
    }

    /// The domain `reference` names: a domid first, else a name.
    static func find(_ reference: String, in domains: [DomainInfo]) -> DomainInfo? {
        if let number = UInt16(reference), let found = domains.first(where: { $0.domid.rawValue == number }) {
            return found
        }
        return domains.first { $0.name == reference }
    }

    /// The toolstack's record of `domain`, with the hypervisor's current view.
    func built(_ domain: DomainInfo) throws -> (DomainRecord, DomainBuilder.Built) {
        guard let record = DomainRecord.load(runDirectory: runDirectory.path, domid: domain.domid.rawValue) else {
            throw CLIError(
                "domain \(domain.domid) (\(domain.name)) was not created by `conch create` in \(runDirectory)"
            )
        }
        return (record, DomainBuilder.Built(domain: domain, plan: record.plan))
    }

    /// A domain's channels as `xl channel-list` shows them: from the frontend nodes
    /// and the toolstack's `/libxl` copy of each `connection`.
    func channelEntries(_ domid: UInt16) async -> [ChannelListEntry] {
        let base = "/local/domain/\(domid)/device/console"
        let devids = ((try? await store.directory(base)) ?? []).compactMap { Int($0) }.filter { $0 > 0 }
        var entries: [ChannelListEntry] = []
        for devid in devids.sorted() {
            var nodes: [String: String] = [:]
            for node in ["backend-id", "state", "port", "ring-ref", "tty"] {
                nodes[node] = try? await store.readString("\(base)/\(devid)/\(node)")
            }
            let connection = try? await store.readString("/libxl/\(domid)/device/console/\(devid)/connection")
            entries.append(ChannelListEntry(index: devid - 1, frontendNodes: nodes, connection: connection))
        }
        return entries
    }

    /// Whether the process in `pidFile` is alive.
    static func isRunning(pidFile: String) -> Bool {
        guard let pid = PidFile(path: pidFile).read() else { return false }
        return kill(pid, 0) == 0
    }
}
