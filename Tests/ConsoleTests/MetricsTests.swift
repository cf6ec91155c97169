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
import XenHypervisor
import XenTestKit
import XenstoreClient

/// consoled's Prometheus endpoint, scraped over real HTTP as Prometheus would.
@Suite("consoled metrics for Prometheus")
struct MetricsTests {
    /// `GET path` on 127.0.0.1:`port`; the status line and the body.
    static func get(_ path: String, port: Int) throws -> (status: String, body: String) {
        let text = try LoopbackHTTP.get(port: port, path)
        let parts = text.components(separatedBy: "\r\n\r\n")
        return (
            parts.first?.components(separatedBy: "\r\n").first ?? "", parts.dropFirst().joined(separator: "\r\n\r\n")
        )
    }

    @Test func theEndpointCarriesEachConsolesCountersAsStatsReportsThem() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled(["--metrics", "127.0.0.1:0"])
        var port: Int?
        #expect(
            host.eventually {
                let log = host.consoled?.log ?? ""
                guard let range = log.range(of: "metrics for Prometheus on http://127.0.0.1:") else { return false }
                port = Int(log[range.upperBound...].prefix { $0.isNumber })
                return port != nil
            },
            "consoled did not say where its metrics are"
        )
        let metricsPort = try #require(port)

        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let built = try await ConsoledTests.build(
            host,
            store,
            name: "metered",
            script: "echo counted-output; sleep 600"
        )
        try host.privilegedHypervisor().unpause(built.domain.domid)
        let d = built.domain.domid.rawValue

        // The figure conch stats reports, once the guest's line is through (after
        // it, the guest only sleeps: the figure holds still).
        #expect(
            host.eventually {
                let log = try? String(contentsOfFile: host.logDirectory + "/guest-metered.log", encoding: .utf8)
                return log?.contains("counted-output") ?? false
            }
        )
        var bytesOut: Int?
        #expect(
            try host.eventually {
                let stats = try ConchExecutable.run(["stats", "metered", "--json", "--run-dir", host.runDirectory])
                let object = try? JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any]
                let console = (object?["consoles"] as? [[String: Any]])?.first
                bytesOut = (console?["counters"] as? [String: Any])?["bytes_out"] as? Int
                return (bytesOut ?? 0) > 0
            }
        )
        let expected = try #require(bytesOut)

        let (status, body) = try Self.get("/metrics", port: metricsPort)
        #expect(status == "HTTP/1.1 200 OK", "\(status)")
        let line = body.split(separator: "\n").first {
            $0.hasPrefix("conch_console_bytes_out_total{") && $0.contains("domid=\"\(d)\"")
                && $0.contains("console=\"0\"") && $0.contains("name=\"metered\"")
        }
        let value = try #require(line.flatMap { $0.split(separator: " ").last }.flatMap { Int($0) }, "\(body)")
        #expect(value == expected, "metrics say \(value), conch stats \(expected)")
        #expect(body.contains("conch_consoled_consoles 1"), "\(body)")
        #expect(body.contains("conch_console_quarantined{"), "\(body)")

        // A second scrape adds nothing the console did not do.
        let again = try Self.get("/metrics", port: metricsPort).body
        #expect(again.contains(String(line!)), "the counter moved without output")
        #expect(try Self.get("/", port: metricsPort).status == "HTTP/1.1 404 Not Found")

        // Whether a client is attached is whether a session holds the console's lock
        // (`conch console` and `conch web` take it), not whether the pty is writable.
        func attached() throws -> String? {
            let body = try Self.get("/metrics", port: metricsPort).body
            let line = body.split(separator: "\n").first {
                $0.hasPrefix("conch_console_client_attached{") && $0.contains("domid=\"\(d)\"")
                    && $0.contains("console=\"0\"")
            }
            return line.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }.map { "\(Int($0))" }
        }
        func sessionPid() throws -> Int? {
            let stats = try ConchExecutable.run(["stats", "metered", "--json", "--run-dir", host.runDirectory])
            let object = try? JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any]
            return (object?["consoles"] as? [[String: Any]])?.first?["session_pid"] as? Int
        }
        #expect(try attached() == "0")
        #expect(try sessionPid() == nil)
        let session = try ConsoleSessionLock.acquire(
            path: ConsoleSessionLock.path(runDirectory: RunDirectory(path: host.runDirectory), domid: d, devid: 0),
            force: false,
            what: "console 0 of metered",
            takeOver: "take it over"
        )
        #expect(try attached() == "1")
        #expect(try sessionPid() == Int(getpid()))
        session.release()
        #expect(try attached() == "0")
    }
}

@Suite("consoled --replace-escape")
struct ConsoleLogEscapeTests {
    @Test func theLogShowsAGuestsESCAsADot() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled(["--replace-escape"])
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let built = try await ConsoledTests.build(
            host,
            store,
            name: "escaper",
            script: #"printf '\033]0;pwned\007 and \033[31mred\n'; sleep 600"#
        )
        try host.privilegedHypervisor().unpause(built.domain.domid)
        var log = ""
        #expect(
            host.eventually {
                log = (try? String(contentsOfFile: host.logDirectory + "/guest-escaper.log", encoding: .utf8)) ?? ""
                return log.contains("red")
            },
            "the guest's line never reached its log"
        )
        #expect(log.contains(".]0;pwned\u{07} and .[31mred"), "\(log.debugDescription)")
        #expect(!log.contains("\u{1b}"), "an ESC reached the log: \(log.debugDescription)")
    }
}
