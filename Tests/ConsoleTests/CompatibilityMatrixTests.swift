//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import Testing
import Toolstack
import XenABI
import XenHypervisor
import XenSim
import XenTestKit
import XenstoreClient

/// The seed's table, extended to the frontends that exist since: {the seed's,
/// Linux 7.1's, legacy} frontend × {new, legacy-flag} backend × {backend running at
/// boot, backend started 2 s after boot}, with a 1 MiB boot log; plus the mixed
/// upgrade case, a 4.21-style builder (page DISCONNECTED) with a flag-unaware backend.
@Suite("Connection-flag compatibility matrix")
struct CompatibilityMatrixTests {
    struct Case: CustomStringConvertible, Sendable {
        let frontend: FrontendMode
        let legacyBackend: Bool
        let lateBackend: Bool
        /// The builder marks the page DISCONNECTED although the backend never
        /// touches the flag (normally a legacy backend comes with a legacy builder).
        var mixed = false

        /// The builder leaves the page zeroed (reads CONNECTED): a pre-4.21 builder.
        var zeroedPage: Bool { legacyBackend && !mixed }

        var description: String {
            "\(frontend.rawValue) frontend, \(legacyBackend ? "legacy" : "new") backend, "
                + "backend \(lateBackend ? "2 s late" : "at boot")"
                + (mixed ? ", page DISCONNECTED by the builder" : "")
        }
    }

    static let cases: [Case] =
        FrontendMode.allCases.flatMap { frontend in
            [false, true].flatMap { backend in
                [false, true].map { Case(frontend: frontend, legacyBackend: backend, lateBackend: $0) }
            }
        }
        + FrontendMode.allCases.map { Case(frontend: $0, legacyBackend: true, lateBackend: false, mixed: true) }

    static let lines = 16_384  // 64 bytes each: 1 MiB
    /// The boot log, then a heartbeat: a guest that dropped its boot log still
    /// shows that it runs once a backend serves it.
    static let script = """
        awk 'BEGIN { for (i = 0; i < \(lines); i++) printf "boot line %08d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n", i }'
        echo BOOT-DONE
        i=0
        while [ $i -lt 300 ]; do echo "TICK $i"; i=$((i + 1)); sleep 0.2; done
        """

    /// The boot lines in `text`, as numbers, in order of appearance.
    static func bootLines(_ text: String) -> [Int] {
        text.split(whereSeparator: \.isNewline).compactMap { line in
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
        let built = try await ConsoledTests.build(
            host,
            store,
            name: "boot",
            script: Self.script,
            frontend: matrixCase.frontend,
            legacyConsolePage: matrixCase.zeroedPage,
            hypervisorConsole: true  // the seed's fallback needs the policy to allow console_io
        )
        let hypervisor = try host.privilegedHypervisor()
        let page = try hypervisor.mapGrant(built.domain.domid, ref: .console, readOnly: true)
        func flag() -> UInt8 { page.load8(at: ConsoleInterface.connectionOffset, ordering: .acquiring) }
        if !matrixCase.lateBackend && !matrixCase.mixed {
            // "Running at boot": serving before the guest writes a byte.
            #expect(host.eventually { flag() != ConsoleConnection.disconnected.rawValue }, "\(matrixCase)")
        }
        try hypervisor.unpause(built.domain.domid)
        let log = host.logDirectory + "/guest-boot.log"
        func logText() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        func dmesg() -> String { String(decoding: (try? hypervisor.readConsole(clear: false)) ?? [], as: UTF8.self) }
        let disconnectedAtBoot = !matrixCase.zeroedPage && (matrixCase.lateBackend || matrixCase.mixed)

        if matrixCase.mixed {
            try await expectMixedCase(matrixCase, host: host, logText: logText, dmesg: dmesg)
            return
        }
        if matrixCase.lateBackend {
            switch (matrixCase.frontend, disconnectedAtBoot) {
            case (.flagAware, true):
                // Never stalls: the whole boot log reaches the hypervisor console with no backend.
                #expect(host.eventually { dmesg().contains("(d1) BOOT-DONE") }, "\(matrixCase)")
            case (.dropWhileDisconnected, true):
                // Never stalls either: it drops what it writes, and says nothing to the hypervisor.
                usleep(2_000_000)
                #expect(!dmesg().contains("boot line"), "\(matrixCase): Linux 7.1 does not use console_io")
            default:
                // The ring fills and the guest waits for a backend.
                usleep(2_000_000)
                #expect(!dmesg().contains("BOOT-DONE"), "\(matrixCase): the guest should be waiting on its ring")
            }
            try host.startConsoled(consoledArguments)
        }
        let dropped = matrixCase.frontend == .dropWhileDisconnected && disconnectedAtBoot
        let finished = host.eventually(seconds: 60) { logText().contains(dropped ? "TICK" : "BOOT-DONE") }
        if !finished {
            let stats = (try? ConchExecutable.run(["stats", "--json", "--run-dir", host.runDirectory]).stdout) ?? ""
            let indices = [
                ConsoleInterface.inConsOffset, ConsoleInterface.inProdOffset, ConsoleInterface.outConsOffset,
                ConsoleInterface.outProdOffset,
            ].map { page.load32(at: $0, ordering: .acquiring) }
            let ring = "ring in_cons/in_prod/out_cons/out_prod \(indices) flag \(flag())"
            Issue.record(
                Comment(
                    rawValue:
                        "\(matrixCase): the guest never reached the log; \(ring); stats: \(stats); "
                        + "consoled log: \(host.consoled?.log ?? "")"
                )
            )
        }
        let numbers = Self.bootLines(logText())
        if dropped {
            // Linux 7.1 dropped the boot it wrote while the page said DISCONNECTED.
            #expect(numbers.count < Self.lines, "\(matrixCase): \(numbers.count) lines")
            #expect(numbers == numbers.sorted(), "\(matrixCase): what did arrive is in order")
        } else if matrixCase.lateBackend && matrixCase.frontend == .flagAware && disconnectedAtBoot {
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
            #expect(flag() == ConsoleConnection.connected.rawValue, "CONNECTED once served")
        }
    }

    /// A DISCONNECTED page that a flag-unaware backend never marks CONNECTED: the
    /// legacy frontend does not care; the seed's writes to the hypervisor console
    /// for ever; Linux 7.1's drops everything. (`conch create` warns about it.)
    private func expectMixedCase(
        _ matrixCase: Case,
        host: HostStack,
        logText: () -> String,
        dmesg: () -> String
    ) async throws {
        switch matrixCase.frontend {
        case .legacy:
            #expect(host.eventually(seconds: 60) { logText().contains("BOOT-DONE") }, "\(matrixCase)")
            #expect(Self.bootLines(logText()) == Array(0..<Self.lines), "\(matrixCase)")
        case .flagAware:
            #expect(host.eventually(seconds: 60) { dmesg().contains("(d1) TICK 3") }, "\(matrixCase)")
            #expect(Self.bootLines(logText()).isEmpty, "\(matrixCase): the console log stays silent")
        case .dropWhileDisconnected:
            usleep(3_000_000)
            #expect(!logText().contains("TICK") && !dmesg().contains("boot line"), "\(matrixCase): silent")
        }
    }
}
