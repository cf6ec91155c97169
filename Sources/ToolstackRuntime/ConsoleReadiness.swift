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
import XenRing
import XenstoreClient

/// Whether consoled serves a new, still paused domain's consoles: the condition
/// `conch create` waits for before it unpauses, so the guest's first byte always
/// has somewhere to go.
///
/// - Console 0: its pty path is in `console/tty` and the ring's `connection`
///   byte is no longer DISCONNECTED (consoled writes CONNECTED only once the ring
///   is mapped, the event channel bound and the pty open; a legacy, zeroed page
///   reads as connected from the start).
/// - Each channel: its sink is published — the backend went to InitWait (or
///   further) and the pty's path is in `tty` or the socket file exists. The
///   channel's own flag can only turn CONNECTED once the paused guest runs and
///   grants its ring; until then its output simply waits in the guest.
public enum ConsoleReadiness {
    /// What is not ready yet, one phrase per piece (empty: everything is ready).
    public static func missing(
        _ built: DomainBuilder.Built,
        store: XenstoreClient,
        consolePage: ConsoleRing<GuestPage>?
    ) async -> [String] {
        var missing: [String] = []
        for console in built.plan.consoles {
            let tty = try? await store.readString(console.frontendPath + "/tty")
            if console.devid == 0 {
                if tty?.isEmpty ?? true { missing.append("console 0 has no pty yet") }
                if let consolePage, consolePage.connection == .disconnected {
                    missing.append("console 0's ring is not marked CONNECTED")
                }
                continue
            }
            let label = "channel \(console.devid)" + (console.name.map { " (\($0))" } ?? "")
            let state = (try? await store.readString(console.backendPath + "/state")).flatMap {
                XenbusState(nodeValue: $0)
            }
            guard let state, state.rawValue >= XenbusState.initWait.rawValue else {
                missing.append("\(label): backend still Initialising")
                continue
            }
            let connection = try? await store.readString(console.backendPath + "/connection")
            if connection == "socket" {
                let path = (try? await store.readString(console.backendPath + "/path")) ?? ""
                if !FileManager.default.fileExists(atPath: path) {
                    missing.append("\(label): socket \(path) not published")
                }
            } else if tty?.isEmpty ?? true {
                missing.append("\(label): no pty yet")
            }
        }
        return missing
    }

    /// Waits until ``missing(_:store:consolePage:)`` is empty.
    ///
    /// - Throws: ``DomainBuilder/BuildError`` naming what was still missing when
    ///   `timeout` ran out.
    public static func wait(
        for built: DomainBuilder.Built,
        store: XenstoreClient,
        hypervisor: any PrivilegedHypervisor,
        timeout: Duration
    ) async throws {
        let page = try? hypervisor.mapForeign(
            built.domain.domid,
            frame: built.domain.start.consoleFrame,
            readOnly: true
        )
        let ring = page.map { ConsoleRing(memory: $0) }
        let deadline = ContinuousClock.now + timeout
        var delay = Duration.microseconds(250)
        while true {
            let missing = await missing(built, store: store, consolePage: ring)
            if missing.isEmpty { return }
            guard ContinuousClock.now < deadline else {
                throw DomainBuilder.BuildError(description: missing.joined(separator: "; "))
            }
            // Short sleeps: consoled usually needs a few milliseconds, and every
            // millisecond here delays the guest's first byte.
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(2))
        }
    }
}
