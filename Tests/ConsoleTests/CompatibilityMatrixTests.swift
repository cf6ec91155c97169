//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Testing
import XenHypervisor
import XenSim
import XenTestKit
import XenstoreClient

/// The seed's table: {new, legacy} frontend × {new, legacy-flag} backend ×
/// {backend running at boot, backend started 2 s after boot}, with a 1 MiB boot log.
@Suite("Connection-flag compatibility matrix")
struct CompatibilityMatrixTests {
    struct Case: CustomStringConvertible, Sendable {
        let legacyFrontend: Bool
        let legacyBackend: Bool
        let lateBackend: Bool
        var description: String {
            "\(legacyFrontend ? "legacy" : "new") frontend, \(legacyBackend ? "legacy" : "new") backend, "
                + "backend \(lateBackend ? "2 s late" : "at boot")"
        }
    }

    static let cases: [Case] = [false, true].flatMap { frontend in
        [false, true].flatMap { backend in
            [false, true].map { Case(legacyFrontend: frontend, legacyBackend: backend, lateBackend: $0) }
        }
    }

    static let lines = 16_384  // 64 bytes each: 1 MiB
    static let script = """
        awk 'BEGIN { for (i = 0; i < \(lines); i++) printf "boot line %08d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n", i }'
        echo BOOT-DONE
        sleep 60
        """

    /// The boot lines in `text`, as numbers, in order of appearance.
    static func bootLines(_ text: String) -> [Int] {
        text.split(separator: "\n").compactMap { line in
            guard let range = line.range(of: "boot line ") else { return nil }
            return Int(line[range.upperBound...].prefix(8))
        }
    }

    @Test(arguments: cases)
    func bootLogAcrossTheMatrix(_ matrixCase: Case) async throws {
        // The seed's fallback sends the whole boot log (1 MiB) to console_io: let it through.
        let host = try HostStack(xenstored: true, hypervisorArguments: ["--console-rate", "\(256 << 20)"])
        defer { host.stop() }
        let consoledArguments = matrixCase.legacyBackend ? ["--legacy-flag"] : []
        if !matrixCase.lateBackend { try host.startConsoled(consoledArguments) }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        // A pre-4.21 backend comes with a pre-4.21 builder: the page stays zeroed.
        let built = try await ConsoledTests.build(
            host,
            store,
            name: "boot",
            script: Self.script,
            legacyFrontend: matrixCase.legacyFrontend,
            legacyConsolePage: matrixCase.legacyBackend,
            hypervisorConsole: true  // the seed's fallback needs the policy to allow console_io
        )
        let hypervisor = try host.privilegedHypervisor()
        try hypervisor.unpause(built.domain.domid)
        let log = host.logDirectory + "/guest-boot.log"
        func logText() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        func dmesg() -> String { String(decoding: (try? hypervisor.readConsole(clear: false)) ?? [], as: UTF8.self) }

        if matrixCase.lateBackend {
            let flagAwareAndDisconnected = !matrixCase.legacyFrontend && !matrixCase.legacyBackend
            if flagAwareAndDisconnected {
                // Never stalls: the whole boot log reaches the hypervisor console with no backend.
                #expect(try host.eventually { dmesg().contains("(d1) BOOT-DONE") }, "\(matrixCase)")
            } else {
                // The ring fills and the guest waits for a backend.
                usleep(2_000_000)
                #expect(!dmesg().contains("BOOT-DONE"), "\(matrixCase): the guest should be waiting on its ring")
            }
            try host.startConsoled(consoledArguments)
        }
        let finished = try host.eventually(seconds: 60) { logText().contains("BOOT-DONE") }
        if !finished {
            let stats = (try? ConchExecutable.run(["stats", "--json", "--run-dir", host.runDirectory]).stdout) ?? ""
            let page = try hypervisor.mapGrant(built.domain.domid, ref: .console, readOnly: true)
            let indices = [3072, 3076, 3080, 3084].map { page.load32(at: $0, ordering: .acquiring) }
            let flag = page.load8(at: 3088, ordering: .acquiring)
            let ring = "ring in_cons/in_prod/out_cons/out_prod \(indices) flag \(flag)"
            Issue.record(
                Comment(
                    rawValue:
                        "\(matrixCase): the boot never finished; \(ring); consoled log: \(host.consoled?.log ?? "")"
                )
            )
        }
        let numbers = Self.bootLines(logText())
        if matrixCase.lateBackend && !matrixCase.legacyFrontend && !matrixCase.legacyBackend {
            // Replayed after connecting: a marker, then the last 64 KiB of the boot, in order.
            #expect(logText().contains("[conch: replaying "), "\(matrixCase)")
            #expect(numbers.last == Self.lines - 1)
            let contiguous = numbers.count >= 900 && numbers == Array(numbers.first!...numbers.last!)
            #expect(contiguous, "\(matrixCase): \(numbers.count) lines")
        } else {
            // Lossless: every line once, in order.
            #expect(
                numbers.count == Self.lines && numbers == Array(0..<Self.lines),
                "\(matrixCase): \(numbers.count) lines"
            )
        }
        if !matrixCase.legacyBackend {
            let page = try hypervisor.mapGrant(built.domain.domid, ref: .console, readOnly: true)
            #expect(page.load8(at: 3088, ordering: .acquiring) == 0, "CONNECTED once served")
        }
    }
}
