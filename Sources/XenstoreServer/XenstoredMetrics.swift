//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CoreMetrics
import MetricsEndpoint
import XenABI
import XenstoreCore

/// What xenstored shows Prometheus (`conch xenstored --metrics HOST:PORT`):
///
/// - `conch_xenstore_requests_total{type}` and `conch_xenstore_request_seconds{type}`
///   (a histogram of the time the engine took, queueing excluded), by request type;
/// - `conch_xenstore_errors_total{type,error}`: requests answered with an error;
/// - `conch_xenstore_watch_events_total`: WATCH_EVENTs queued for clients;
/// - `conch_xenstore_connections`: socket clients and guest rings, at scrape time.
///
/// Recorded on the hub's event loop, one request at a time; a xenstored without
/// `--metrics` has no recorder and pays one nil check per request.
final class XenstoredMetrics: @unchecked Sendable {
    // Confined to the hub's event loop: `record` and `scraped` run only there.
    let metrics = DaemonMetrics()
    private var requests: [Counter?] = Array(repeating: nil, count: Int(XenstoreMessageType.typeCount))
    private var timers: [Timer?] = Array(repeating: nil, count: Int(XenstoreMessageType.typeCount))
    private var errors: [String: Counter] = [:]
    private lazy var watchEvents = Counter(label: "conch_xenstore_watch_events_total", factory: metrics.factory)

    /// One request handled in `nanoseconds`, with the effects it had.
    func record(_ type: XenstoreMessageType, nanoseconds: Int64, effects: [XenstoreEffect]) {
        // Unknown types are answered EINVAL; they are counted under one name.
        let index = type.rawValue < XenstoreMessageType.typeCount ? Int(type.rawValue) : 0
        let name = type.rawValue < XenstoreMessageType.typeCount ? "\(type)" : "UNKNOWN"
        if requests[index] == nil {
            requests[index] = Counter(
                label: "conch_xenstore_requests_total",
                dimensions: [("type", name)],
                factory: metrics.factory
            )
            timers[index] = Timer(
                label: "conch_xenstore_request_seconds",
                dimensions: [("type", name)],
                preferredDisplayUnit: .seconds,
                factory: metrics.factory
            )
        }
        requests[index]?.increment()
        timers[index]?.recordNanoseconds(nanoseconds)
        for effect in effects {
            guard case .send(_, let message) = effect else { continue }
            if message.type == .watchEvent {
                watchEvents.increment()
            } else if let error = message.replyError {
                let key = "\(name) \(error)"
                if errors[key] == nil {
                    errors[key] = Counter(
                        label: "conch_xenstore_errors_total",
                        dimensions: [("type", name), ("error", "\(error)")],
                        factory: metrics.factory
                    )
                }
                errors[key]?.increment()
            }
        }
    }

    /// The gauges, brought up to date just before a scrape.
    func scraped(connections: Int) {
        Gauge(label: "conch_xenstore_connections", factory: metrics.factory).record(connections)
    }
}
