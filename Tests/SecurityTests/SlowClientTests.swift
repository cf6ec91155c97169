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
import XenABI
import XenTestKit

#if canImport(Glibc)
import Glibc
#endif

/// Output is never silently lost: a console 0 client too slow for its guest is
/// told how much it missed (it is all in the log).
@Suite("console 0: a slow client sees a drop marker")
struct SlowClientTests {
    @Test func theMarkerIsUnitTested() {
        var pump = ConsolePump(ConsolePump.Configuration(kind: .primary, logging: true), now: 0)
        let skipped = pump.planOutput(readable: 100, sink: .waitingForClient, now: 0)
        #expect(!skipped.sendToClient)
        pump.commitOutput([UInt8](repeating: 65, count: 100), plan: skipped, now: 0)
        #expect(pump.clientMissed == 100)
        let marker = String(decoding: pump.takeClientMissedMarker() ?? [], as: UTF8.self)
        #expect(marker.contains("[conch: 100 bytes not shown"))
        #expect(pump.counters.clientMissedBytes == 100)
        #expect(pump.takeClientMissedMarker() == nil, "once per gap")
        // A client that attaches with `conch console` gets the history instead.
        pump.commitOutput([UInt8](repeating: 66, count: 10), plan: skipped, now: 0)
        _ = pump.replayForNewClient()
        #expect(pump.takeClientMissedMarker() == nil)
    }

    @Test func aClientThatReadsTooSlowlySeesWhatItMissed() async throws {
        let stack = try await Hostile.start()
        defer { stack.stop() }
        let built = try await stack.create(
            """
            name = "chatty"
            kernel = "/bin/sh"
            cmdline = "-c 'sleep 1; i=0; while [ $i -lt 4000 ]; do echo \\"line $i of a chatty guest, padded out a bit\\"; \
            i=$((i+1)); done; echo CHATTY-DONE; sleep 600'"
            """,
            guestKernel: true
        )
        let node = "/local/domain/\(built.domain.domid.rawValue)/console/tty"
        #expect(try await stack.host.eventuallyAsync { try await !stack.store.readString(node).isEmpty })
        let tty = try await stack.store.readString(node)
        // A client that opens the console and then does not read for a while.
        let client = open(tty, O_RDWR | O_NOCTTY | O_CLOEXEC)
        #expect(client >= 0)
        defer { close(client) }
        let log = stack.host.logDirectory + "/guest-chatty.log"
        #expect(
            stack.host.eventually {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("CHATTY-DONE")
            },
            "the guest was held up by a client that does not read"
        )
        // Now it reads: what the pty held, then the marker for the rest.
        _ = fcntl(client, F_SETFL, O_NONBLOCK)
        var seen = ""
        var buffer = [UInt8](repeating: 0, count: 65536)
        #expect(
            stack.host.eventually {
                let got = read(client, &buffer, buffer.count)
                if got > 0 { seen += String(decoding: buffer.prefix(got), as: UTF8.self) }
                return seen.contains("bytes not shown: this console's client read too slowly")
            },
            "no marker; the client saw \(seen.count) bytes"
        )
        let stats = try ConchExecutable.run(["stats", "--json", "--run-dir", stack.host.runDirectory]).stdout
        #expect(stats.contains("\"client_missed_bytes\":") && !stats.contains("\"client_missed_bytes\":0,"), "\(stats)")
        let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(whereSeparator: \.isNewline)
        #expect(lines.filter { $0.contains("of a chatty guest") }.count == 4000, "the log has everything")
    }
}
