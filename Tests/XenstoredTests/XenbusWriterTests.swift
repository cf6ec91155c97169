//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import NIOPosix
import SystemExtras
import Testing
import XenABI
import XenHypervisor
import XenMemory
import XenRing
import XenTestKit
import XenstoreCore
import XenstoreServer
import XenstoreWire

/// Linux's xenbus writes a request in pieces (header, then payload) and notifies
/// only when its write finds the ring empty (`prod <= req_cons` in `xb_write`).
/// A server that waits for whole messages before consuming never hears of the
/// rest: the guest hangs. Seen on real Xen (the rig's `xenstored` scenario hung
/// one boot in three); reproduced here with a writer that behaves as Linux's.
@Suite("xenstored: Linux's xenbus writer")
struct XenbusWriterTests {
    /// The guest's side, as Linux does it.
    struct LinuxXenbus {
        let page: GuestPage
        let channel: any EventChannelEndpoint
        var ring: XenstoreRing<GuestPage> { XenstoreRing(memory: page) }

        /// `xb_write`: copy what fits, publish, notify only if the server had
        /// consumed everything before this write.
        func write(_ bytes: [UInt8]) throws {
            var rest = bytes[...]
            while !rest.isEmpty {
                let before = page.load32(at: XenstoreInterface.reqProdOffset, ordering: .acquiring)
                let written = try ring.frontend.output.write(rest)
                rest = rest.dropFirst(written)
                let consumed = page.load32(at: XenstoreInterface.reqConsOffset, ordering: .acquiring)
                if Int32(bitPattern: before &- consumed) <= 0 { try channel.notify() }
                if written == 0 { _ = try channel.wait(timeoutMilliseconds: 100) }
            }
        }

        /// The next whole reply, or nil after `seconds`.
        func reply(within seconds: Double) throws -> XenstoreMessage? {
            var decoder = XenstoreDecoder()
            let deadline = ContinuousClock.now + .seconds(seconds)
            while ContinuousClock.now < deadline {
                let bytes = try ring.frontend.input.read(maxCount: XenstoreInterface.ringSize)
                if let message = decoder.feed(bytes).first { return message }
                _ = try channel.wait(timeoutMilliseconds: 50)
            }
            return nil
        }
    }

    @Test(arguments: [1, 16, 17])
    func aRequestWrittenInPiecesIsAnswered(firstPiece: Int) async throws {
        let fake = FakeHypervisor()
        let hypervisor = fake.privileged()
        let kernelChannel = try hypervisor.allocateUnbound(remote: .dom0)
        let memory = HeapPage()
        let daemon = try await InProcessXenstored(hypervisor: hypervisor)
        let page = GuestPage(region: memory.region, isWritable: true, owner: memory)
        try await daemon.serveLocal(page: page, port: kernelChannel.port)
        _ = try kernelChannel.wait(timeoutMilliseconds: 10_000)

        let xenbus = LinuxXenbus(page: page, channel: kernelChannel)
        let request = XenstoreMessage(type: .write, reqID: 7, payload: Array("/tool/pieces\0value".utf8)).encoded()
        // The first piece goes alone and the server takes it; the rest follows
        // without a notification, as Linux does once the ring is not empty.
        try xenbus.write(Array(request.prefix(firstPiece)))
        try await Task.sleep(for: .milliseconds(200))
        try xenbus.write(Array(request.dropFirst(firstPiece)))
        let reply = try xenbus.reply(within: 10)
        #expect(reply?.type == .write, "no reply: the rest of the request was never taken")
        #expect(reply?.reqID == 7)
        try await daemon.stop()
    }

    @Test func aPrefixTakenBeforeAKillIsResumed() async throws {
        let directory = try RunDirectory.makeTemporary(prefix: "conch-journal")
        defer { try? FileManager.default.removeItem(atPath: directory.path) }
        let path = directory.path + "/journal"
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let logger = Logger(label: "test")
        let request = XenstoreMessage(type: .write, reqID: 9, payload: Array("/tool/resumed\0yes".utf8)).encoded()

        final class Endpoint: XenstoreEndpoint {
            var written: [UInt8] = []
            var isWritable: Bool { true }
            func write(_ message: XenstoreMessage) { written += message.encoded() }
            func flush() {}
            func setReading(_ enabled: Bool) {}
            func close() {}
        }
        // The first daemon takes 20 bytes of a request (dom0 kernel ring), records them, and dies.
        let first = try JournalFile.open(path: path)
        let connection = try await loop.submit {
            let hub = XenstoreHub(eventLoop: loop, journal: first, logger: logger)
            let id = hub.attach(Endpoint(), domid: .dom0, privileged: true, persistent: true)
            hub.receivedPrefix(Array(request.prefix(20)), from: id)
            return id
        }.get()
        // The next one resumes the connection with those bytes, and the rest completes it.
        let second = try JournalFile.open(path: path)
        let (resumed, store) = try await loop.submit {
            let hub = XenstoreHub(eventLoop: loop, journal: second, logger: logger)
            let endpoint = Endpoint()
            let prefix = hub.reattach(endpoint, id: connection, domid: .dom0)
            var receiver = XenstoreRingReceiver(pending: prefix)
            let page = HeapPage()
            let ring = XenstoreRing(memory: page)
            _ = try ring.frontend.output.write(request.dropFirst(20))
            let step = try receiver.peek(from: ring.backend.input)
            guard case .message(let whole, _) = step else { return (prefix, [UInt8]()) }
            hub.received(whole, from: connection)
            try receiver.take(step, from: ring.backend.input)
            return (prefix, endpoint.written)
        }.get()
        #expect(resumed == Array(request.prefix(20)))
        var decoder = XenstoreDecoder()
        let reply = decoder.feed(store).first
        #expect(reply?.type == .write, "the resumed request was not answered: \(String(describing: reply))")
        #expect(reply?.reqID == 9)
        try await group.shutdownGracefully()
    }
}
