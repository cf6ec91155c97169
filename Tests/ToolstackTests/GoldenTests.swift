//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

// Dry-run golden files: Fixtures/<name>.cfg → Fixtures/<name>.json (the
// DryRunReport, sorted keys, pretty printed). Set CONCH_UPDATE_GOLDEN=1 to
// rewrite the expected files after a deliberate change, then review the diff.

import Foundation
import SystemExtras
import Testing
import Toolstack
import XenABI

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
private let updating = ProcessInfo.processInfo.environment["CONCH_UPDATE_GOLDEN"] == "1"

private func encode<T: Encodable>(_ value: T) throws -> String {
    try JSONOutput.string(value, pretty: true) + "\n"
}

private func compare(_ actual: String, golden name: String) throws {
    let url = fixtures.appendingPathComponent(name)
    if updating {
        try actual.write(to: url, atomically: true, encoding: .utf8)
        return
    }
    let expected = try String(contentsOf: url, encoding: .utf8)
    #expect(actual == expected, "\(name) differs; rerun with CONCH_UPDATE_GOLDEN=1 and review the diff")
}

@Suite("dry-run golden files")
struct GoldenTests {
    static let configs = [
        "minimal", "full", "root-extra", "channel-quirks", "two-channels", "channel-single-string",
        "ch-missing-equals", "ch-empty-value", "ch-unknown-connection", "ch-no-connection", "ch-socket-no-path",
        "ch-empty-spec", "ch-no-name", "ch-not-a-string",
        "bad-missing-equals", "bad-unterminated-string", "bad-no-kernel", "bad-action", "bad-cmdline-quote",
        "bad-misspelt-kernel",
    ]

    @Test(arguments: configs)
    func dryRun(name: String) throws {
        let text = try String(contentsOf: fixtures.appendingPathComponent("\(name).cfg"), encoding: .utf8)
        let report = DryRunReport.make(text: text, fileName: "\(name).cfg")
        try compare(try encode(report), golden: "\(name).json")
        // The JSON is a faithful, decodable record of the report.
        let decoded = try JSONOutput.decoder.decode(DryRunReport.self, from: Data(try encode(report).utf8))
        #expect(decoded == report)
        // Error fixtures fail, the others succeed.
        #expect((report.error != nil) == (name.hasPrefix("ch-") || name.hasPrefix("bad-")))
    }

    @Test func everyFixtureIsListed() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: fixtures.path).filter { $0.hasSuffix(".cfg") }
        #expect(Set(files.map { String($0.dropLast(4)) }) == Set(Self.configs))
    }

    @Test func twoChannelPlan() throws {
        let text = try String(contentsOf: fixtures.appendingPathComponent("two-channels.cfg"), encoding: .utf8)
        let configuration = try DomainConfiguration.parse(text, fileName: "two-channels.cfg").configuration
        let plan = try DomainPlan.make(for: configuration, context: twoChannelContext)
        try compare(try encode(plan), golden: "two-channels.plan.json")
        #expect(try JSONOutput.decoder.decode(DomainPlan.self, from: Data(try encode(plan).utf8)) == plan)
    }

    @Test func deviationsTable() throws {
        try compare(try encode(DomainPlan.deviations), golden: "deviations.json")
    }
}
