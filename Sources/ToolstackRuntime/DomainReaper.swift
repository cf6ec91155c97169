//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Toolstack
import XenABI
import XenHypervisor
import XenstoreClient

/// Cleans up after domains that ended on their own — their program exited, they
/// crashed, or the hypervisor died with them: the toolstack's record goes, and
/// so do their xenstore trees (`/local/domain/<d>`, their backends, `/vm/<uuid>`,
/// `/libxl/<d>`), as libxl does when xl's death watcher sees a domain go.
///
/// `conch up` runs one; it acts on every `@releaseDomain` and once at start.
public final class DomainReaper: Sendable {
    let hypervisor: any PrivilegedHypervisor
    let store: XenstoreClient
    let runDirectory: String

    public init(hypervisor: any PrivilegedHypervisor, store: XenstoreClient, runDirectory: String) {
        self.hypervisor = hypervisor
        self.store = store
        self.runDirectory = runDirectory
    }

    /// Reaps at once and after every `@releaseDomain`, until the task is cancelled.
    public func run() async {
        guard let events = try? await store.watch("@releaseDomain", token: "reaper") else { return }
        for await _ in events {
            guard !Task.isCancelled else { return }
            _ = await reap()
        }
    }

    /// Removes what is left of every recorded domain the hypervisor no longer has
    /// (or has under another uuid: its domid was reused). Returns the domids reaped.
    @discardableResult
    public func reap() async -> [UInt16] {
        guard let domains = listDomains() else { return [] }
        let live = Dictionary(
            domains.filter { $0.state != .dying }.map { ($0.domid.rawValue, $0.uuid) },
            uniquingKeysWith: { first, _ in first }
        )
        let directory = DomainRecord.directory(runDirectory: runDirectory)
        let recorded = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap {
            $0.hasSuffix(".json") ? UInt16($0.dropLast(5)) : nil
        }
        var reaped: [UInt16] = []
        for domid in recorded.sorted() {
            guard let record = DomainRecord.load(runDirectory: runDirectory, domid: domid) else { continue }
            if live[domid] == record.plan.uuid { continue }
            // The tree is removed only if it is still this domain's (not a new one's with the same domid).
            let vm = try? await store.readString(ConsoleLayout.home(DomID(domid)) + "/vm")
            if live[domid] == nil || vm == "/vm/\(record.plan.uuid)" {
                for path in record.plan.teardownPaths { try? await store.remove(path) }
            } else {
                try? await store.remove("/vm/\(record.plan.uuid)")
            }
            DomainRecord.remove(runDirectory: runDirectory, domid: domid)
            reaped.append(domid)
        }
        return reaped
    }

    /// The hypervisor's domains; after it restarted, the connection is made again.
    private func listDomains() -> [DomainInfo]? {
        if let domains = try? hypervisor.listDomains() { return domains }
        guard let recoverable = hypervisor as? any RecoverableHypervisor, (try? recoverable.reconnect()) != nil else {
            return nil
        }
        return try? hypervisor.listDomains()
    }
}
