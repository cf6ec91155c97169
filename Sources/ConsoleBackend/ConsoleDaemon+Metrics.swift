//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import CoreMetrics
import MetricsEndpoint
import XenABI

/// What consoled shows Prometheus (`consoled --metrics HOST:PORT`): every counter
/// of `conch stats`, per console, labelled `domid`, `console` and `name`, plus how
/// many consoles it serves. Figures are taken from the consoles' own counters
/// when Prometheus scrapes, so a console nobody watches pays nothing for them.
final class ConsoledMetrics: @unchecked Sendable {
    // Confined to the daemon's actor: ``record(_:)`` is called from it only.
    let metrics = DaemonMetrics()
    private var reported: [ConsoleKey: ConsoleCounters] = [:]

    /// The counters of `ConsoleCounters`, with their Prometheus names.
    private static let counters: [(name: String, value: KeyPath<ConsoleCounters, UInt64> & Sendable)] = [
        ("conch_console_bytes_out_total", \.bytesOut),
        ("conch_console_bytes_in_total", \.bytesIn),
        ("conch_console_dropped_bytes_total", \.droppedBytes),
        ("conch_console_client_missed_bytes_total", \.clientMissedBytes),
        ("conch_console_ring_full_total", \.ringFullEvents),
        ("conch_console_throttled_periods_total", \.throttledPeriods),
        ("conch_console_quarantines_total", \.quarantines),
        ("conch_console_flag_transitions_total", \.flagTransitions),
        ("conch_console_notifications_total", \.notifications),
    ]

    /// Brings the registry up to `stats`: counters grow by what the consoles
    /// counted since the last scrape (a console served anew starts again from 0).
    func record(_ stats: ConsoledStats) {
        var seen: [ConsoleKey: ConsoleCounters] = [:]
        for console in stats.consoles {
            let key = ConsoleKey(domid: DomID(console.domid), devid: console.devid)
            let dimensions = [
                ("domid", String(console.domid)), ("console", String(console.devid)), ("name", console.name),
            ]
            let before = reported[key]
            for counter in Self.counters {
                let now = console.counters[keyPath: counter.value]
                let old = before?[keyPath: counter.value] ?? 0
                let delta = now >= old ? now - old : now
                guard delta > 0 || before == nil else { continue }
                Counter(label: counter.name, dimensions: dimensions, factory: metrics.factory)
                    .increment(by: Int64(clamping: delta))
            }
            Gauge(label: "conch_console_quarantined", dimensions: dimensions, factory: metrics.factory)
                .record(console.counters.quarantineReason == nil ? 0 : 1)
            // A pty console has a client when a session holds it; a socket channel,
            // when the keeper says a client is connected to its socket.
            let attached = console.connection == "pty" ? console.sessionPid != nil : console.clientConnected == true
            Gauge(label: "conch_console_client_attached", dimensions: dimensions, factory: metrics.factory)
                .record(attached ? 1 : 0)
            seen[key] = console.counters
        }
        reported = seen
        Gauge(label: "conch_consoled_consoles", factory: metrics.factory).record(stats.consoles.count)
    }
}
