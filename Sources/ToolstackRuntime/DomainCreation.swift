//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import SystemExtras
import Toolstack
import XenABI
import XenHypervisor

extension HostConnection {
    /// `create`: builds the domain, records it, waits until consoled serves its
    /// consoles (unless `wait` is nil) and unpauses it. A domain whose consoles are
    /// not served in time is destroyed again and its record removed: nothing is
    /// left half made.
    ///
    /// - Parameters:
    ///   - configFile: recorded with the domain (`conch list` and re-creation).
    ///   - guestKernel: the command the hypervisor runs as the guest's kernel,
    ///     before the configuration's program (`conch guest-kernel --frontend …`).
    ///   - legacyBuilder: leave console 0's page zeroed, as Xen 4.17's builder does.
    ///   - warn: told about what will work but probably not as meant.
    public func create(
        _ configuration: DomainConfiguration,
        configFile: String?,
        guestKernel: [String],
        legacyBuilder: Bool,
        wait: Duration?,
        warn: (String) -> Void
    ) async throws -> DomainBuilder.Built {
        if !legacyBuilder, configuration.frontend.readsConnectionFlag,
            (try? await store.readString(ConsoleLayout.consoledSetsFlag)) == "0"
        {
            warn(Self.flagUnawareBackendWarning(configuration.name))
        }
        let built: DomainBuilder.Built
        do {
            built = try await builder.build(configuration, legacyConsolePage: legacyBuilder, guestKernel: guestKernel)
        } catch let error as DomainBuilder.BuildError {
            throw ToolstackError(error.description)
        }
        let domid = built.domain.domid
        let record = DomainRecord(
            domid: domid.rawValue,
            configuration: configuration,
            plan: built.plan,
            configurationFile: configFile
        )
        try record.save(runDirectory: runDirectory.path)
        if let wait {
            do {
                try await ConsoleReadiness.wait(for: built, store: store, hypervisor: hypervisor, timeout: wait)
            } catch let error as DomainBuilder.BuildError {
                try? await builder.destroy(domid)
                DomainRecord.remove(runDirectory: runDirectory.path, domid: domid.rawValue)
                let hint =
                    Self.isRunning(pidFile: runDirectory.consoledPidFile)
                    ? "consoled is running but did not serve the domain (see its log)"
                    : "consoled is not running in \(runDirectory): start it (`conch up`, or "
                        + "`conch consoled --run-dir \(runDirectory)`) or create with --no-wait"
                throw ToolstackError("domain not created: consoled not ready: \(error.description); \(hint)")
            }
        }
        try hypervisor.unpause(domid)
        return built
    }

    /// What the simulator's hypervisor runs as a domain's kernel: this conch's
    /// `guest-kernel`, with the frontend the configuration asks for.
    public static func conchGuestKernel(_ configuration: DomainConfiguration) -> [String] {
        [ChildProcess.currentExecutable(), "guest-kernel", "--frontend", configuration.frontend.rawValue]
    }

    /// The mixed upgrade case: a 4.21-style page (DISCONNECTED until a backend says
    /// otherwise) for a flag-aware guest, and a backend that never touches the flag.
    public static func flagUnawareBackendWarning(_ name: String) -> String {
        "warning: consoled runs with --legacy-flag and never marks a console CONNECTED, but "
            + "\(name)'s console page starts DISCONNECTED and its frontend reads the flag: console 0 "
            + "would stay silent (the seed's frontend writes to the hypervisor console, Linux 7.1's "
            + "drops). Create it with --legacy-builder, or run consoled without --legacy-flag."
    }
}
