//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Testing
import XenTestKit

/// Conch on a real Xen: boots Debian's Xen 4.17 and a PV dom0 under QEMU (TCG)
/// with `scripts/real-xen/run.sh` and runs each scenario there (see TESTING.md).
/// Needs qemu-system-x86_64 and Debian's package archive; `.ci/run` installs the
/// former and runs these in their own step. Without QEMU every scenario says so.
@Suite("Real Xen under QEMU", .serialized)
struct RealXenRigTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let qemuInstalled = ProcessInfo.processInfo.environment["PATH", default: "/usr/bin:/bin"]
        .split(separator: ":")
        .contains { FileManager.default.isExecutableFile(atPath: "\($0)/qemu-system-x86_64") }

    static let skipReason: Comment = "skipped: install qemu-system-x86 to boot real Xen under QEMU"

    /// The scenarios this suite runs; each is `scripts/real-xen/dom0/<name>.sh`.
    static let scenarios = ["xenstored", "consoled", "late-backend", "channels", "side-by-side", "matrix"]

    @Test(.enabled(if: qemuInstalled, skipReason), arguments: scenarios)
    func scenarioPasses(_ scenario: String) throws {
        let result = try Self.run(scenario)
        // The JSON line is the scenario's report: print it for the CI log.
        print("real-xen \(scenario): \(result.lastLine)")
        #expect(result.status == 0, "the rig's scenario \(scenario) failed: \(result.lastLine)")
        let report = try JSONSerialization.jsonObject(with: Data(result.lastLine.utf8)) as? [String: Any]
        #expect(report?["passed"] as? Bool == true)
        #expect(report?["scenario"] as? String == scenario)
    }

    @Test(
        .enabled(
            if: ProcessInfo.processInfo.environment["CI"] != nil,
            "checked only in CI, where .ci/run installs QEMU"
        )
    )
    func qemuIsPresentInCI() {
        #expect(Self.qemuInstalled, "qemu-system-x86 is missing in CI: .ci/run must install it")
    }

    @Test func everyScenarioHasAScript() {
        let scripts =
            (try? FileManager.default.contentsOfDirectory(
                atPath: Self.repository.appendingPathComponent("scripts/real-xen/dom0").path
            )) ?? []
        for scenario in Self.scenarios { #expect(scripts.contains("\(scenario).sh")) }
    }

    /// Runs the rig with the conch these tests were built with (unless
    /// `CONCH_RIG_CONCH` names another), its progress on standard error.
    static func run(_ scenario: String) throws -> (status: Int32, lastLine: String) {
        var environment = ProcessInfo.processInfo.environment
        if environment["CONCH_RIG_CONCH"] == nil { environment["CONCH_RIG_CONCH"] = try ConchExecutable.path() }
        let process = try TestProcess(
            repository.appendingPathComponent("scripts/real-xen/run.sh").path,
            [scenario],
            environment: environment,
            output: .pipe,
            error: .inherit
        )
        let output = PipeDrain(process.standardOutput!)
        // run.sh bounds QEMU itself (CONCH_RIG_TIMEOUT); this is the backstop.
        process.wait(seconds: 3600)
        let text = String(decoding: output.collect(), as: UTF8.self)
        let lastLine = text.split(separator: "\n").last.map(String.init) ?? ""
        return (process.status, lastLine)
    }
}
