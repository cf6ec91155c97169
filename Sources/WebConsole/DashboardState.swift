//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import SystemExtras
import ToolstackRuntime
import XenABI
import XenHypervisor

/// What the dashboard shows, as `GET /api/state` serves it: every guest with its
/// consoles and channels, their counters as consoled reports them (the same
/// figures as `conch stats --json`), and whether a session is attached.
public struct DashboardState: Codable, Sendable, Equatable {
    public var domains: [Domain]
    /// Why some of it is missing ("consoled is not running"), if it is.
    public var problem: String?

    public struct Domain: Codable, Sendable, Equatable {
        public var domid: UInt16
        public var name: String
        public var state: String
        public var consoles: [Console]
    }

    public struct Console: Codable, Sendable, Equatable {
        public var devid: Int
        /// "console 0", "channel org.conch.agent".
        public var label: String
        /// The channel's name; empty for a console.
        public var name: String
        /// "pty" or "socket".
        public var connection: String
        public var counters: ConsoleCounters
        /// The pid of the `conch console` or `conch web` session attached, if any.
        public var sessionPid: Int32?
        /// A socket channel: whether a client is connected to its socket.
        public var clientConnected: Bool?

        enum CodingKeys: String, CodingKey {
            case devid, label, name, connection, counters
            case sessionPid = "session_pid"
            case clientConnected = "client_connected"
        }
    }

    /// Reads the state from the host: the guests from the hypervisor, the consoles
    /// from consoled's statistics socket (a guest consoled does not serve shows
    /// no consoles), the sessions from their locks.
    static func read(host: HostConnection) async -> DashboardState {
        var problem: String?
        var stats: [ConsoleStats] = []
        do {
            let raw = try UnixSocketPath.exchange(host.runDirectory.consoledSocket, request: nil)
            stats = try JSONDecoder().decode(ConsoledStats.self, from: Data(raw)).consoles
        } catch {
            problem = "consoled is not running (nothing answers on \(host.runDirectory.consoledSocket))"
        }
        var domains: [Domain] = []
        for guest in (try? await host.guests()) ?? [] {
            let consoles = stats.filter { $0.domid == guest.domid.rawValue }.sorted { $0.devid < $1.devid }.map {
                Console(
                    devid: $0.devid,
                    label: Self.isChannel($0) ? "channel \($0.name)" : "console \($0.devid)",
                    name: Self.isChannel($0) ? $0.name : "",
                    connection: $0.connection,
                    counters: $0.counters,
                    sessionPid: $0.sessionPid,
                    clientConnected: $0.clientConnected
                )
            }
            domains.append(
                Domain(
                    domid: guest.domid.rawValue,
                    name: guest.name,
                    state: guest.shutdownReason.map { "shutdown(\($0.rawValue))" } ?? guest.state.rawValue,
                    consoles: consoles
                )
            )
        }
        return DashboardState(domains: domains.sorted { $0.domid < $1.domid }, problem: problem)
    }

    /// consoled names console 0 after its domain and an unnamed console N `console<N>`.
    static func isChannel(_ console: ConsoleStats) -> Bool {
        console.devid > 0 && !console.name.isEmpty && console.name != "console\(console.devid)"
    }
}
