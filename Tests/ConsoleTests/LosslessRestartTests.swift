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

#if canImport(Glibc)
import Glibc
#endif

/// A guest streams a known 64 MiB pattern over a socket channel while consoled is
/// killed with SIGKILL 100 times at random moments and restarted; the reader must
/// see every byte once, in order.
@Suite("consoled killed mid-stream")
struct LosslessRestartTests {
    static let total = 64 << 20

    /// The guest: 32-bit little-endian counters 0, 1, 2, … into the channel, then waits.
    static let writer = """
        import os, struct, time
        fd = os.open(os.environ["CONCH_GUEST_DEV"] + "/xen-channel/org.conch.stream.0", os.O_WRONLY | os.O_NOCTTY)
        words, i = \(total / 4), 0
        while i < words:
            n = min(16384, words - i)
            view = memoryview(struct.pack("<%dI" % n, *range(i, i + n)))
            while view:
                view = view[os.write(fd, view):]
            i += n
        print("stream written", flush=True)
        time.sleep(600)
        """

    @Test func everyByteOnceInOrderAcross100Kills() async throws {
        let python = try #require(which("/usr/bin/python3"), "needs /usr/bin/python3 for the guest's writer")
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled()
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let socketPath = host.runDirectory + "/stream.sock"
        let built = try await ConsoledTests.build(
            host,
            store,
            name: "stream",
            script: "exec \(python) -c '\(Self.writer)'",
            channels: ["name=org.conch.stream.0, connection=socket, path=\(socketPath)"]
        )
        try host.privilegedHypervisor().unpause(built.domain.domid)

        // The reader: one connection for the whole run (the keeper holds it while
        // consoled is dead), checking every counter.
        #expect(host.eventually { FileManager.default.fileExists(atPath: socketPath) })
        let reader = try UnixSocketPath.connect(socketPath)
        let verdict = Locked<(received: Int, firstError: String?)>((0, nil))
        let readerDone = Locked(false)
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            var carry: [UInt8] = []
            var word = 0
            var received = 0
            while received <= Self.total {
                var entry = pollfd(fd: reader, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 60_000) > 0 else { break }  // 60 s of silence: give up
                let got = read(reader, &buffer, buffer.count)
                guard got > 0 else { break }
                received += got
                carry += buffer[..<got]
                let whole = carry.count / 4 * 4
                var index = 0
                while index < whole {
                    let value =
                        UInt32(carry[index]) | UInt32(carry[index + 1]) << 8 | UInt32(carry[index + 2]) << 16
                        | UInt32(carry[index + 3]) << 24
                    if value != UInt32(truncatingIfNeeded: word), verdict.value.firstError == nil {
                        verdict.value.firstError = "word \(word) (byte \(word * 4)) is \(value)"
                    }
                    word += 1
                    index += 4
                }
                carry.removeFirst(whole)
                verdict.value.received = received
                // Past the end: keep reading a moment to catch duplicates at the tail.
                if received == Self.total {
                    var tail = pollfd(fd: reader, events: Int16(POLLIN), revents: 0)
                    if poll(&tail, 1, 1000) <= 0 { break }
                }
            }
            readerDone.value = true
        }
        thread.start()

        // 100 SIGKILLs at random moments, each followed by a restart.
        var generator = SystemRandomNumberGenerator()
        var killsWhileStreaming = 0
        for _ in 0..<100 {
            usleep(UInt32.random(in: 1_000...60_000, using: &generator))
            if verdict.value.received < Self.total { killsWhileStreaming += 1 }
            host.stopConsoled(kill: true)
            try host.startConsoled()
        }
        #expect(host.eventually(seconds: 180) { readerDone.value }, "the reader finished")
        close(reader)
        let (received, firstError) = verdict.value
        #expect(firstError == nil, "\(firstError ?? "")")
        #expect(received == Self.total, "received \(received) bytes of \(Self.total)")
        print("lossless restart: 100 kills, \(killsWhileStreaming) while the stream was in flight")
        // Kills that all came after the stream ended would prove nothing.
        #expect(killsWhileStreaming >= 10, "only \(killsWhileStreaming) of 100 kills hit the stream in flight")
        try? host.privilegedHypervisor().destroy(built.domain.domid)
    }
}
