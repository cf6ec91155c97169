//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import XenABI
import XenTestKit
import XenstoreClient
import XenstoreWire

@Suite("XenstoreClient against conch xenstored")
struct ClientLibraryTests {
    @Test func requestsRepliesAndErrors() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { client.close() }
        try await client.write("/local/domain/1/name", "one")
        #expect(try await client.readString("/local/domain/1/name") == "one")
        #expect(try await client.directory("/local/domain") == ["1"])
        #expect(try await client.exists("/local/domain/1"))
        #expect(try await !client.exists("/local/domain/2"))
        await #expect(throws: XenstoreClientError.server(.ENOENT)) { try await client.read("/local/domain/2") }
        await #expect(throws: XenstoreClientError.server(.EINVAL)) { try await client.read("/bad//path") }
        await #expect(throws: XenstoreClientError.payloadTooLarge) {
            try await client.write("/local/x", [UInt8](repeating: 1, count: 5000))
        }
        #expect(try await client.getDomainPath(DomID(5)) == "/local/domain/5")
        try await client.setPermissions(
            "/local/domain/1",
            XenstorePermissions(owner: DomID(1), acl: [.init(.read, .dom0)])
        )
        #expect(try await client.permissions("/local/domain/1").description == "n1,r0")
    }

    /// A listing too big for one reply (a host past ~800 guests has one under
    /// /local/domain) comes back whole, through DIRECTORY_PART, as libxenstore gets it.
    @Test func aDirectoryTooBigForOneReplyIsReadInParts() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { client.close() }
        let names = (0..<1500).map { "guest-\($0)" }
        for batch in stride(from: 0, to: names.count, by: 100) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for name in names[batch..<min(batch + 100, names.count)] {
                    group.addTask { try await client.write("/local/many/\(name)", "") }
                }
                try await group.waitForAll()
            }
        }
        let listingBytes = names.reduce(0) { $0 + $1.utf8.count + 1 }
        #expect(listingBytes > 3 * XenstoreInterface.payloadMax, "the listing needs several chunks")
        let listed = try await client.directory("/local/many")
        #expect(listed.count == names.count)
        #expect(Set(listed) == Set(names))
        // Small listings still take one DIRECTORY.
        try await client.write("/local/few/a", "")
        try await client.write("/local/few/b", "")
        #expect(try await client.directory("/local/few") == ["a", "b"])
    }

    /// A batch is sent in one go and applied in order; each request gets its own
    /// result, errors included, and a transaction sees the whole batch.
    @Test func batchesArePipelinedInOrder() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { client.close() }
        let results = try await client.batch([
            .mkdir("/b/dir"),
            .write("/b/dir/key", "first"),
            .write("/b/dir/key", "second"),  // order matters: the last write wins
            .remove("/nowhere/at/all"),  // no parent: ENOENT
            .setPermissions("/b/dir", XenstorePermissions(owner: DomID(3), acl: [])),
            .init(.read, XenstorePayload.string("/b/dir/key")),
        ])
        #expect(results.count == 6)
        #expect(results[3] == .failure(.server(.ENOENT)), "each request has its own result")
        #expect(try results[5].get() == Array("second".utf8))
        #expect(try await client.permissions("/b/dir").description == "n3")

        // Inside a transaction: nothing is visible until the commit.
        try await client.transaction { transaction in
            let inside = try await client.batch(
                (0..<300).map { .write("/b/t/k\($0)", "v\($0)") },
                transaction: transaction
            )
            #expect(inside.allSatisfy { (try? $0.get()) != nil })
            #expect(try await !client.exists("/b/t"))
        }
        #expect(try await client.directory("/b/t").count == 300)
        #expect(try await client.batch([]).isEmpty)
    }

    /// Many tasks share one connection; replies are matched by req_id.
    @Test func concurrentRequestsAreMatchedByRequestID() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { client.close() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<200 {
                group.addTask {
                    try await client.write("/local/domain/0/k\(index)", "v\(index)")
                    let value = try await client.readString("/local/domain/0/k\(index)")
                    #expect(value == "v\(index)")
                }
            }
            try await group.waitForAll()
        }
        #expect(try await client.directory("/local/domain/0").count == 200)
    }

    @Test func watchesAreAnAsyncSequence() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { client.close() }
        let events = try await client.watch("/local/domain/3", token: "t3")
        var iterator = events.makeAsyncIterator()
        #expect(await iterator.next() == XenstoreWatchEvent(path: "/local/domain/3", token: "t3"))
        try await client.write("/local/domain/3/name", "x")
        #expect(await iterator.next() == XenstoreWatchEvent(path: "/local/domain/3/name", token: "t3"))
        // Relative watch paths are reported relative.
        let relative = try await client.watch("data", token: "rel")
        var relativeIterator = relative.makeAsyncIterator()
        #expect(await relativeIterator.next()?.path == "data")
        try await client.write("/local/domain/0/data/x", "1")
        #expect(await relativeIterator.next()?.path == "data/x")
        try await client.unwatch("/local/domain/3", token: "t3")
        #expect(await iterator.next() == nil, "unwatch ends the stream")
        await #expect(throws: XenstoreClientError.server(.ENOENT)) {
            try await client.unwatch("/local/domain/3", token: "t3")
        }
    }

    /// Two clients race a read-modify-write; the helper retries EAGAIN until every
    /// increment lands exactly once.
    @Test func transactionHelperRetriesOnConflict() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        let setup = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        try await setup.write("/local/counter", "0")
        setup.close()
        let rounds = 40
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
                    defer { client.close() }
                    var attempts = 0
                    for _ in 0..<rounds {
                        try await client.transaction { transaction in
                            attempts += 1
                            let value = Int(try await client.readString("/local/counter", transaction: transaction))!
                            try await client.write("/local/counter", "\(value + 1)", transaction: transaction)
                        }
                    }
                    return attempts
                }
            }
            var attempts = 0
            for try await count in group { attempts += count }
            #expect(attempts >= 4 * rounds)
        }
        let check = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { check.close() }
        #expect(try await check.readString("/local/counter") == "\(4 * rounds)")
    }

    @Test func aStoppedDaemonFailsRequestsInsteadOfHanging() async throws {
        let daemon = try XenstoredProcess()
        let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        _ = try await client.read("/")
        let stopped = daemon.stop()
        #expect(stopped.status == 0, "SIGTERM stops xenstored cleanly: \(stopped.log)")
        await #expect(throws: XenstoreClientError.connectionClosed) { try await client.read("/") }
    }

    @Test func defaultSocketPathFollowsLibxenstore() {
        #expect(XenstoreClient.defaultSocketPath(environment: ["XENSTORED_PATH": "/x/s"]) == "/x/s")
        #expect(XenstoreClient.defaultSocketPath(environment: ["XENSTORED_RUNDIR": "/r"]) == "/r/socket")
        #expect(XenstoreClient.defaultSocketPath(environment: [:]) == "/var/run/xenstored/socket")
    }

    @Test func valueEscapingRoundTrips() {
        let all = (0...255).map { UInt8($0) }
        #expect(XenstoreValueEscaping.unescape(XenstoreValueEscaping.escape(all)) == all)
        #expect(XenstoreValueEscaping.escape([9, 10, 13, 92, 1, 0x7f, 65]) == "\\t\\n\\r\\\\\\001\\x7fA")
        #expect(XenstoreValueEscaping.unescape("a\\x4\\7z\\") == [97, 4, 7, 122, 0])
    }
}
