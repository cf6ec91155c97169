//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConchBench
import SystemExtras
import Testing
import XenABI
import XenRing
import XenTestKit

/// A second real process (`conch ring-peer`) holds the guest end of a console
/// ring in a memfd page it received over SCM_RIGHTS; data moves both ways with
/// eventfd notifications.
@Suite("Console ring across two processes")
struct CrossProcessRingTests {
    /// Deadlock guard, not a timing assertion: a healthy run finishes in well
    /// under a second; only a lost notification would reach this.
    static let hangGuardMilliseconds: Int32 = 60_000

    @Test func dataMovesBothWaysWithNotifications() throws {
        let total = 1 << 20
        let input = (0..<total).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 9) }
        let session = try RingPeerSession(
            executable: try ConchExecutable.path(),
            arguments: ["ring-peer"],
            request: RingPeerRequest(mode: .echo, chunkSize: 700, totalBytes: UInt64(total))
        )
        let backend = session.backend
        var sent = 0
        var echoed: [UInt8] = []
        echoed.reserveCapacity(total)
        while echoed.count < total {
            var progressed = false
            if sent < total {
                // Keyboard direction: backend → `in` ring → guest.
                let written = try backend.output.write(input[sent..<min(sent + 300, total)])
                sent += written
                if written > 0 {
                    progressed = true
                    try session.notifyFrontend()
                }
            }
            // Console direction: guest → `out` ring → backend.
            let bytes = try backend.input.read(maxCount: 2048)
            if !bytes.isEmpty {
                echoed += bytes
                progressed = true
                try session.notifyFrontend()
            }
            if !progressed {
                let woke = try session.waitForFrontend(timeoutMilliseconds: Self.hangGuardMilliseconds)
                try #require(woke, "no notification from the peer: a wake-up was lost")
            }
        }
        #expect(echoed == input)
        #expect(try session.finish(), "the peer reported failure or exited non-zero")
        // The indices in the page record exactly the bytes that moved.
        #expect(session.ring.memory.load32(at: ConsoleInterface.inProdOffset, ordering: .acquiring) == UInt32(total))
        #expect(session.ring.memory.load32(at: ConsoleInterface.outConsOffset, ordering: .acquiring) == UInt32(total))
    }

    /// The benchmark path itself checks every byte against the pattern; a short
    /// run of each mode proves the modes are correct, whatever their speed.
    @Test(arguments: [RingPeerMode.produceBusy, .produceEventfd, .produceHybrid])
    func benchmarkModesDeliverThePattern(mode: RingPeerMode) throws {
        let rate = try RingBenchmark.measure(
            mode: mode,
            totalBytes: 4 << 20,
            peerExecutable: try ConchExecutable.path(),
            peerArguments: ["ring-peer"]
        )
        #expect(rate > 0)
    }

    @Test func peerRejectsAMalformedRequest() throws {
        let (parent, child) = try UnixSocket.pair()
        let process = try ChildProcess(
            executable: try ConchExecutable.path(),
            arguments: ["ring-peer"],
            descriptors: [3: child.fileDescriptor]
        )
        try parent.send([UInt8](repeating: 0xff, count: 16))  // no descriptors, unknown mode
        #expect(try parent.receive(maxBytes: 1).bytes == [1])
        #expect(try process.wait() == .exited(2))
    }
}
