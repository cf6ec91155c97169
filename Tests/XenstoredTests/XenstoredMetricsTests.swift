//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras
import Testing
import XenTestKit
import XenstoreClient

/// xenstored's Prometheus endpoint, scraped over HTTP after known requests.
@Suite("xenstored metrics for Prometheus")
struct XenstoredMetricsTests {
    @Test func requestsErrorsLatenciesAndWatchEventsAreCounted() async throws {
        let daemon = try XenstoredProcess(extraArguments: ["--metrics", "127.0.0.1:0"])
        defer { daemon.stop() }
        let marker = "metrics for Prometheus on http://127.0.0.1:"
        var port: Int?
        for _ in 0..<500 where port == nil {
            if let range = daemon.log.range(of: marker) {
                port = Int(daemon.log[range.upperBound...].prefix { $0.isNumber })
            } else {
                usleep(10_000)
            }
        }
        let metricsPort = try #require(port, "xenstored did not say where its metrics are: \(daemon.log)")

        let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { client.close() }
        try await client.write("/metered/a", "1")
        try await client.write("/metered/a", "2")
        _ = try await client.readString("/metered/a")
        await #expect(throws: (any Error).self) { _ = try await client.readString("/metered/missing") }
        let events = try await client.watch("/metered/a", token: "t")
        var iterator = events.makeAsyncIterator()
        _ = await iterator.next()  // fired once on registration
        try await client.write("/metered/a", "3")
        _ = await iterator.next()

        let scrape = try LoopbackHTTP.get(port: metricsPort, "/metrics")
        #expect(scrape.hasPrefix("HTTP/1.1 200"), "\(scrape.prefix(200))")
        func value(_ prefix: String) -> Double? {
            scrape.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { $0.split(separator: " ").last }
                .flatMap { Double($0) }
        }
        #expect(value(#"conch_xenstore_requests_total{type="WRITE"}"#) == 3, "\(scrape)")
        #expect(value(#"conch_xenstore_requests_total{type="READ"}"#) == 2, "\(scrape)")
        #expect(value(#"conch_xenstore_requests_total{type="WATCH"}"#) == 1, "\(scrape)")
        #expect(value(#"conch_xenstore_errors_total{type="READ",error="ENOENT"}"#) == 1, "\(scrape)")
        #expect(value(#"conch_xenstore_errors_total{type="WRITE""#) == nil, "a write failed: \(scrape)")
        #expect(value(#"conch_xenstore_request_seconds_count{type="READ"}"#) == 2, "\(scrape)")
        #expect(value("conch_xenstore_watch_events_total") == 2, "\(scrape)")
        #expect(value("conch_xenstore_connections") == 1, "\(scrape)")
    }
}
