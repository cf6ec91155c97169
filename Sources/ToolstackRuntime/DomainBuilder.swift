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
import XenstoreWire

/// The libxl part of the toolstack: turns a validated ``DomainConfiguration`` into
/// a domain — hypervisor resources, the xenstore layout libxl writes (one
/// transaction), INTRODUCE to xenstored — ready to unpause. A failure at any
/// step removes whatever was built, so nothing is left half-built.
public struct DomainBuilder: Sendable {
    public let hypervisor: any PrivilegedHypervisor
    public let store: XenstoreClient
    /// The domain running consoled (console and channel backend) and the one
    /// running xenstored.
    public var consoleBackend: DomID = .dom0
    public var xenstoreDomain: DomID = .dom0

    public init(hypervisor: any PrivilegedHypervisor, store: XenstoreClient) {
        self.hypervisor = hypervisor
        self.store = store
    }

    /// What was built.
    public struct Built: Sendable {
        public let domain: DomainInfo
        public let plan: DomainPlan

        public init(domain: DomainInfo, plan: DomainPlan) {
            self.domain = domain
            self.plan = plan
        }
    }

    public struct BuildError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Builds a paused domain.
    ///
    /// - Parameters:
    ///   - legacyConsolePage: leave the console page zeroed (a pre-4.21 builder)
    ///     instead of marking it DISCONNECTED.
    ///   - guestKernel: the program that hosts the guest (the Conch guest kernel),
    ///     given the configured kernel and its arguments after `--`; nil runs the
    ///     configured kernel directly.
    ///   - environment: extra environment for the guest process.
    ///   - pageCount: pages of simulated memory (the guest kernel needs one per
    ///     channel ring beyond the reserved frames).
    public func build(
        _ configuration: DomainConfiguration,
        legacyConsolePage: Bool = false,
        guestKernel: [String]? = nil,
        environment: [String: String] = [:],
        pageCount: Int = DomainSpec.defaultPageCount
    ) async throws -> Built {
        // Validate everything a plan needs before touching the hypervisor.
        try configuration.validate(isExecutable: { FileManager.default.isExecutableFile(atPath: $0) })
        try Self.checkSocketPaths(configuration.channels)
        let uuid = configuration.uuid ?? UUID().uuidString.lowercased()
        let program: String
        let arguments: [String]
        var payload: String?
        if let guestKernel, let first = guestKernel.first {
            program = first
            arguments = Array(guestKernel.dropFirst()) + ["--", configuration.kernel] + configuration.arguments
            payload = configuration.kernel
        } else {
            program = configuration.kernel
            arguments = configuration.arguments
        }
        let spec = DomainSpec(
            name: configuration.name,
            uuid: uuid,
            program: program,
            arguments: arguments,
            environment: environment,
            pageCount: pageCount,
            onPoweroff: configuration.onPoweroff,
            onReboot: configuration.onReboot,
            onCrash: configuration.onCrash,
            consoleBackend: consoleBackend,
            xenstoreDomain: xenstoreDomain,
            legacyConsolePage: legacyConsolePage,
            payload: payload,
            hypervisorConsole: configuration.hypervisorConsole,
            maxEventChannels: configuration.maxEventChannels,
            maxGrantMappings: configuration.maxMaptrackFrames * 512
        )
        let domain = try hypervisor.createDomain(spec)
        do {
            let plan = try makePlan(configuration, for: domain, uuid: uuid)
            try await apply(plan)
            return Built(domain: domain, plan: plan)
        } catch {
            try? hypervisor.destroy(domain.domid)
            for path in DomainPlan.teardownPaths(domid: domain.domid, uuid: uuid, consoles: []) {
                try? await store.remove(path)
            }
            if let validation = error as? DomainValidationError { throw BuildError(description: validation.message) }
            throw error
        }
    }

    /// The plan for `configuration` on `domain`; backend names resolve to the
    /// domains the hypervisor knows (`Domain-0` is dom0).
    private func makePlan(
        _ configuration: DomainConfiguration,
        for domain: DomainInfo,
        uuid: String
    ) throws
        -> DomainPlan
    {
        // Listing every domain costs O(domains); only a channel naming its backend
        // domain needs it.
        let needsNames = configuration.channels.contains { channel in
            guard let backend = channel.backend else { return false }
            return backend != "Domain-0" && UInt16(backend) == nil
        }
        let names =
            needsNames
            ? Dictionary(
                try hypervisor.listDomains().map { ($0.name, $0.domid) },
                uniquingKeysWith: { first, _ in first }
            )
            : [:]
        var configured = configuration
        configured.uuid = uuid
        return try DomainPlan.make(
            for: configured,
            context: PlanContext(
                domid: domain.domid,
                uuid: uuid,
                consoleBackend: consoleBackend,
                xenstoreDomain: xenstoreDomain,
                consoleRingFrame: domain.start.consoleFrame,
                consolePort: domain.start.consolePort,
                storeRingFrame: domain.start.xenstoreFrame,
                storePort: domain.start.xenstorePort,
                resolveDomainName: { name in name == "Domain-0" ? .dom0 : names[name] }
            )
        )
    }

    /// Writes the plan's nodes in one transaction (retried on EAGAIN), then
    /// introduces the domain.
    func apply(_ plan: DomainPlan) async throws {
        // One pipelined batch per attempt: xenstored applies a connection's requests
        // in order, so this is the same sequence as one request at a time, in one
        // round trip instead of about a hundred.
        var requests: [XenstoreClient.BatchRequest] = []
        var removals: Set<Int> = []
        for step in plan.steps {
            switch step {
            case .remove(let path):
                removals.insert(requests.count)
                requests.append(.remove(path))
            case .mkdir(let path, let permissions):
                requests.append(.mkdir(path))
                requests.append(.setPermissions(path, permissions))
            case .write(let path, let value, let permissions):
                requests.append(.write(path, value))
                if let permissions { requests.append(.setPermissions(path, permissions)) }
            case .introduce:
                continue  // after the commit, below
            }
        }
        try await store.transaction { transaction in
            let results = try await store.batch(requests, transaction: transaction)
            for (index, result) in results.enumerated() {
                guard case .failure(let error) = result else { continue }
                // Clearing stale state: a path that is not there is fine.
                if removals.contains(index), error == .server(.ENOENT) { continue }
                throw error
            }
        }
        for case .introduce(let domid, let frame, let port) in plan.steps {
            try await store.introduce(domid, frame: frame.rawValue, port: port)
        }
    }

    /// A socket channel's path must be free for consoled's keeper to listen on: a
    /// socket there is fine (a stale one the keeper created; it replaces only
    /// those), anything else is an error now rather than a refusal in the keeper's
    /// log, and so is a directory that does not exist.
    public static func checkSocketPaths(_ channels: [ChannelConfiguration]) throws {
        for channel in channels {
            guard case .socket(let path)? = channel.connection else { continue }
            let label = "channel \(channel.devid - 1)\(channel.name.map { " (\($0))" } ?? "")"
            guard path.hasPrefix("/") else {
                throw BuildError(description: "\(label): the socket path \(path) must be absolute")
            }
            var info = stat()
            if lstat(path, &info) == 0 {
                guard info.st_mode & S_IFMT == S_IFSOCK else {
                    throw BuildError(
                        description: "\(label): \(path) already exists and is not a socket; consoled will not "
                            + "replace it: remove it or choose another path"
                    )
                }
                continue
            }
            let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            var parent = stat()
            guard stat(directory.isEmpty ? "/" : directory, &parent) == 0, parent.st_mode & S_IFMT == S_IFDIR else {
                throw BuildError(description: "\(label): the directory of its socket \(path) does not exist")
            }
        }
    }

    /// Hot-plugs console `devid` of `configuration` (its channel `devid - 1`) into
    /// the running domain `built`: writes just that console's frontend, backend
    /// and `/libxl` nodes, in one transaction. The guest kernel and consoled take
    /// it from there through the XenBus state machine.
    public func plugConsole(
        _ devid: Int,
        of configuration: DomainConfiguration,
        into built: Built
    ) async throws -> DomainPlan {
        try Self.checkSocketPaths(configuration.channels.filter { $0.devid == devid })
        let plan = try makePlan(configuration, for: built.domain, uuid: built.plan.uuid)
        guard let console = plan.consoles.first(where: { $0.devid == devid }) else {
            throw BuildError(description: "the configuration has no console \(devid)")
        }
        let roots = [console.frontendPath, console.backendPath, console.libxlPath]
        let steps = plan.steps.filter { step in
            guard let path = step.path else { return false }
            return roots.contains { path == $0 || path.hasPrefix($0 + "/") }
        }
        var only = plan
        only.steps = steps
        try await apply(only)
        return plan
    }

    /// Unplugs a console: the backend goes to Closing (5), as libxl does before it
    /// removes a device; the guest closes its end and consoled tears the console
    /// down. Call ``removeConsoleNodes(_:of:)`` once the frontend reports Closed.
    public func unplugConsole(_ devid: Int, of plan: DomainPlan) async throws {
        guard let console = plan.consoles.first(where: { $0.devid == devid }) else {
            throw BuildError(description: "the domain has no console \(devid)")
        }
        try await store.write(console.backendPath + "/state", "\(XenbusState.closing.rawValue)")
    }

    /// Removes an unplugged console's nodes.
    public func removeConsoleNodes(_ devid: Int, of plan: DomainPlan) async throws {
        guard let console = plan.consoles.first(where: { $0.devid == devid }) else { return }
        for path in [console.frontendPath, console.backendPath, console.libxlPath] {
            try? await store.remove(path)
        }
    }

    /// Destroys a domain and removes its xenstore subtree, its backend
    /// directories and its `/libxl/<d>` nodes (reconstructed from xenstore).
    public func destroy(_ domid: DomID) async throws {
        let uuid = try? await store.readString("/local/domain/\(domid.rawValue)/vm").split(separator: "/").last.map(
            String.init
        )
        var consoles: [(devid: Int, backend: DomID)] = []
        let libxl = "/libxl/\(domid.rawValue)/device/console"
        for devid in (try? await store.directory(libxl)) ?? [] {
            guard let number = Int(devid) else { continue }
            let text = try? await store.readString("\(libxl)/\(devid)/backend-id")
            let backend = text.flatMap { UInt16($0) }.map { DomID($0) }
            consoles.append((number, backend ?? consoleBackend))
        }
        consoles.append((0, consoleBackend))
        try hypervisor.destroy(domid)
        for path in DomainPlan.teardownPaths(domid: domid, uuid: uuid, consoles: consoles) {
            try? await store.remove(path)
        }
        try? await store.remove("/libxl/\(domid.rawValue)")
    }
}
