//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Toolstack
import XenABI
import XenHypervisor

extension HostConnection {
    /// `destroy`: the domain goes at once (its program is killed) with its nodes
    /// and its record.
    public func destroy(_ domain: DomainInfo) async throws {
        try await builder.destroy(domain.domid)
        DomainRecord.remove(runDirectory: runDirectory.path, domid: domain.domid.rawValue)
    }

    /// `shutdown`: asks the guest through `control/shutdown`, as xl does; with a
    /// `wait`, returns once the domain has gone (and forgets its record), or throws
    /// when it is still there after `wait`.
    public func shutdown(_ domain: DomainInfo, reboot: Bool, wait: Duration?) async throws {
        try await store.write(
            ConsoleLayout.home(domain.domid) + "/control/shutdown",
            reboot ? "reboot" : "poweroff"
        )
        guard let wait else { return }
        let deadline = ContinuousClock.now + wait
        while ContinuousClock.now < deadline {
            let alive = try hypervisor.listDomains().contains { $0.domid == domain.domid && $0.state != .dying }
            if !alive {
                DomainRecord.remove(runDirectory: runDirectory.path, domid: domain.domid.rawValue)
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ToolstackError(
            "domain \(domain.name) did not shut down within \(wait): its program may ignore SIGTERM; "
                + "`conch destroy \(domain.name)` stops it at once"
        )
    }

    /// `channel-attach`: hot-plugs the channel `spec` (xl.cfg syntax) into a
    /// running domain as its next console device. Returns the channel's index
    /// (`channel-list`'s Idx) and the spec's warnings.
    public func attachChannel(
        _ spec: String,
        to domain: DomainInfo
    ) async throws -> (index: Int, warnings: [String]) {
        let (loaded, built) = try built(domain)
        var record = loaded
        let devid = (record.configuration.channels.map(\.devid).max() ?? 0) + 1
        let parsed: ChannelConfiguration.ParseResult
        do {
            parsed = try ChannelConfiguration.parse(spec: spec, index: devid - 1)
        } catch {
            throw ToolstackError(error.message)
        }
        var configuration = record.configuration
        configuration.channels.append(parsed.channel)
        do {
            try configuration.validate()
            record.plan = try await builder.plugConsole(devid, of: configuration, into: built)
        } catch let error as DomainValidationError {
            throw ToolstackError(error.message)
        } catch let error as DomainBuilder.BuildError {
            throw ToolstackError(error.description)
        }
        record.configuration = configuration
        try record.save(runDirectory: runDirectory.path)
        return (devid - 1, parsed.warnings)
    }

    /// `channel-detach`: the backend goes to Closing, the guest closes its end
    /// (given up to `timeout`), consoled tears the channel down, the nodes go.
    /// Returns false when the guest did not close its end in time (the channel is
    /// removed anyway).
    public func detachChannel(index: Int, from domain: DomainInfo, timeout: Duration) async throws -> Bool {
        var (record, _) = try built(domain)
        let devid = index + 1
        guard let position = record.configuration.channels.firstIndex(where: { $0.devid == devid }) else {
            throw ToolstackError(
                "domain \(domain.name) has no channel \(index): see `conch channel-list \(domain.name)`"
            )
        }
        try await builder.unplugConsole(devid, of: record.plan)
        let state = ConsoleLayout.frontend(domain.domid, devid: devid) + "/state"
        let deadline = ContinuousClock.now + timeout
        var closed = false
        while ContinuousClock.now < deadline {
            let value = try? await store.readString(state)
            if value == nil || value == "\(XenbusState.closed.rawValue)" {
                closed = true
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await builder.removeConsoleNodes(devid, of: record.plan)
        record.configuration.channels.remove(at: position)
        record.plan.consoles.removeAll { $0.devid == devid }
        try record.save(runDirectory: runDirectory.path)
        return closed
    }
}
