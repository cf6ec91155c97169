//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import ConsoleKeeper
import Foundation
import Logging
import NIOCore
import NIOPosix
import SystemExtras
import XenABI
import XenHypervisor
import XenRing
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

extension ConsoleDaemon {
    // MARK: - Supervision of what consoled depends on

    /// Connects to the keeper (starting it if need be) and watches its process:
    /// if it dies, a new one is started and every socket channel published again.
    func startKeeper() async throws {
        guard let launch = configuration.keeper else { return }
        let keeper = try launch()
        keeperClient = keeper
        keeperGeneration += 1
        guard let pid = keeper.keeperPID else { return }
        let generation = keeperGeneration
        ProcessExitWatch.start(pid: pid, threadName: "keeper-watch") { [self] in
            Task { await self.keeperDied(generation) }
        }
    }

    func keeperDied(_ generation: Int) async {
        guard !stopping, generation == keeperGeneration else { return }
        keeperGeneration += 1
        logger.warning("the sink keeper died: restarting it; socket channels' clients must connect again")
        var delay: Duration = .milliseconds(50)
        while !stopping {
            do {
                try await startKeeper()
                break
            } catch {
                logger.error("cannot restart the sink keeper: \(error)")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
        // Publish every socket channel again and reconnect the ones being served.
        for (key, early) in prepared {
            if case .socket(let path) = early.spec,
                let name = await read(
                    ConsoleLayout.backend(of: key.domid, devid: key.devid, backend: configuration.backendDomid)
                        + "/name"
                )
            {
                try? keeper().open(key: key, path: path, name: name)
            }
        }
        for key in sessions.keys.sorted() {
            guard let session = sessions[key], case .socket(let path) = session.sinkSpec, !session.closed else {
                continue
            }
            session.client?.close(promise: nil)
            session.client = nil
            do {
                try await attachKeeper(session, path: path)
                session.pump.updateSink(session.sinkReadiness)
                service(key)
            } catch {
                logger.warning(
                    "cannot reattach a socket channel to the new keeper: \(error)",
                    metadata: ["console": "\(key)"]
                )
            }
        }
        logger.info("sink keeper restarted")
    }

    /// The simulated hypervisor can die and come back (with none of the old
    /// domains): reconnect, then drop every domain that is gone.
    func monitorHypervisor() async throws {
        guard let recoverable = hypervisor as? any RecoverableHypervisor else { return }
        let monitor = try recoverable.makeLossMonitor()
        hypervisorWatch = try await watchEvents(
            monitor,
            ownership: .taken,
            onClose: { [self] in
                Task { await self.hypervisorLost(recoverable) }
            }
        )
    }

    func hypervisorLost(_ recoverable: any RecoverableHypervisor) async {
        guard !stopping else { return }
        logger.warning("the hypervisor went away: reconnecting")
        var delay: Duration = .milliseconds(50)
        while !stopping {
            if (try? recoverable.reconnect()) != nil { break }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(1))
        }
        guard !stopping else { return }
        logger.info("reconnected to the hypervisor")
        try? await monitorHypervisor()
        rescanDomains()
    }

    /// Tears a console down: what is readable goes to its log, the flag becomes
    /// DISCONNECTED (unless `disconnect` is false: consoled restarts and a new one
    /// takes over), sinks close, the socket file goes, the port is closed.
    func teardown(_ key: ConsoleKey, reason: String, disconnect: Bool = true) {
        guard let session = sessions.removeValue(forKey: key) else { return }
        if session.key.devid == 0, let log = session.log,
            let bytes = try? session.ring.backend.input.peek(maxCount: 4096),
            !bytes.isEmpty, log.append(bytes)
        {
            try? session.ring.backend.input.consume(bytes.count)
        }
        session.closed = true
        if disconnect && !configuration.legacyFlag {
            // No notify: guests poll the flag (as with CONNECTED, and as upstream).
            session.ring.connection = .disconnected
            session.pump.backendWroteFlag(.disconnected)
        }
        session.notifications?.close(promise: nil)
        session.ptyChannel?.close(promise: nil)
        session.client?.close(promise: nil)
        if case .socket = session.sinkSpec { keeperClient?.close(key: key) }
        try? hypervisor.close(session.channel.port)
        logger.info("console torn down: \(reason)", metadata: ["console": "\(key)"])
    }

    func quarantine(_ session: ConsoleSession, _ reason: String) {
        session.pump.quarantine(reason: reason)
        logger.warning("console quarantined: \(reason)", metadata: ["console": "\(session.key)"])
        session.notifications?.close(promise: nil)
        session.notifications = nil
    }
}
