//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import XenABI
import XenstoreWire

@testable import XenstoreCore

@Suite("Domains, features, quotas, control")
struct DomainTests {
    @Test func introduceEffectsInOrder() {
        var h = Harness()
        h.ok(C.obs, .watch, "@introduceDomain\0i\0")
        let effects = h.send(C.d0, .introduce, "7\0" + "4660\0" + "3\0")
        #expect(effects.count == 3)
        #expect(effects.first == .introduceDomain(DomID(7), frame: 4660, port: 3))
        guard effects.count == 3, case .send(C.d0, let reply) = effects[1], case .send(C.obs, let event) = effects[2]
        else {
            Issue.record("unexpected effects \(effects)")
            return
        }
        #expect(reply.payload == XenstorePayload.ok)
        #expect(event == .watchEvent(path: "@introduceDomain", token: Array("i".utf8)))
        #expect(h.engine.isIntroduced(DomID(7)))

        // Again: only a rebind, no event.
        let again = h.send(C.d0, .introduce, "7\0" + "4660\0" + "8\0")
        #expect(again.count == 2)
        #expect(again.first == .rebindDomain(DomID(7), port: 8))
    }

    @Test func domainTable() {
        var h = Harness()
        h.run([
            step(C.d0, .introduce, "5\0" + "100\0" + "0\0", .error(.EINVAL)),  // port must be > 0
            step(C.d0, .introduce, "x\0" + "100\0" + "1\0", .error(.EINVAL)),
            step(C.d0, .introduce, "5\0" + "-1\0" + "1\0", .error(.EINVAL)),
            step(C.d0, .introduce, "32752\0" + "100\0" + "1\0", .error(.EINVAL)),  // DOMID_SELF
            step(C.d0, .introduce, "5\0" + "100\0", .error(.EINVAL)),
            step(C.d0, .isDomainIntroduced, "5\0", .payload("F\0")),
            step(C.d0, .introduce, "5\0" + "100\0" + "1\0", .ok),
            step(C.d0, .isDomainIntroduced, "5\0", .payload("T\0")),
            step(C.d0, .isDomainIntroduced, "32752\0", .payload("T\0")),
            step(C.d0, .isDomainIntroduced, "0\0", .payload("T\0")),
            step(C.d0, .release, "0\0", .error(.EINVAL)),
            step(C.d0, .release, "9\0", .error(.ENOENT)),
            step(C.d0, .resume, "9\0", .error(.ENOENT)),
            step(C.d0, .resume, "5\0", .ok),
            step(C.d0, .release, "5\0", .ok),
            step(C.d0, .isDomainIntroduced, "5\0", .payload("F\0")),
            step(C.d0, .release, "5\0", .error(.ENOENT)),
            // Privileged-only requests from a guest.
            step(C.g1, .introduce, "5\0" + "100\0" + "1\0", .error(.EACCES)),
            step(C.g1, .release, "5\0", .error(.EACCES)),
            step(C.g1, .resume, "5\0", .error(.EACCES)),
            step(C.g1, .isDomainIntroduced, "5\0", .error(.EACCES)),
            step(C.g1, .setTarget, "1\0" + "2\0", .error(.EACCES)),
            step(C.g1, .control, "help\0", .error(.EACCES)),
            step(C.g1, .setFeature, "5\0" + "0\0", .error(.EACCES)),
            step(C.g1, .getQuota, "\0", .error(.EACCES)),
            step(C.g1, .setQuota, "nodes\0" + "1\0", .error(.EACCES)),
            // ...and the privilege check comes before the transaction lookup.
            step(C.g1, .release, "5\0", tx: 42, .error(.EACCES)),
            // GET_DOMAIN_PATH is open to everyone.
            step(C.g1, .getDomainPath, "7\0", .payload("/local/domain/7\0")),
            step(C.g1, .getDomainPath, "seven\0", .error(.EINVAL)),
        ])
    }

    @Test func releaseRemovesOwnedNodesAndFiresReleaseDomain() {
        var h = Harness()
        h.run([
            step(C.d0, .introduce, "5\0" + "100\0" + "1\0", .ok),
            step(C.d0, .mkdir, "/local/domain/5/device\0", .ok),
            step(C.d0, .setPerms, "/local/domain/5\0n5\0", .ok),
            step(C.d0, .mkdir, "/backend/vif/5\0", .ok),
            step(C.d0, .setPerms, "/backend/vif/5\0n5\0", .ok),
            step(C.d0, .write, "/backend/vif/6\0keep", .ok),
            step(C.obs, .watch, "@releaseDomain\0r\0", .ok),
            step(C.obs, .watch, "/backend\0b\0", .ok),
            step(C.obs, .watch, "/local/domain/5/device\0dev\0", .ok),
        ])
        let (reply, events, effects) = h.call(C.d0, .release, "5\0")
        #expect(reply?.payload == XenstorePayload.ok)
        #expect(effects.last == .releaseDomain(DomID(5)))
        #expect(
            events == [
                Event(C.obs, "/local/domain/5/device", "dev"),  // exact event for a removed descendant
                Event(C.obs, "/backend/vif/5", "b"),
                Event(C.obs, "@releaseDomain", "r"),
            ]
        )
        #expect(h.engine.value(at: "/local/domain/5") == nil)
        #expect(h.engine.value(at: "/backend/vif/5") == nil)
        #expect(h.engine.value(at: "/backend/vif/6") == Array("keep".utf8))
        #expect(h.engine.nodeCount(ownedBy: DomID(5)) == 0)
        #expect(h.engine.invariantViolations().isEmpty)
    }

    @Test func shutdownFiresOnceUntilResume() {
        var h = Harness()
        h.ok(C.obs, .watch, "@releaseDomain\0r\0")
        #expect(h.engine.domainShutdown(DomID(5)).isEmpty)  // unknown domain
        h.ok(C.d0, .introduce, "5\0" + "100\0" + "1\0")
        let event = XenstoreEffect.send(to: C.obs, .watchEvent(path: "@releaseDomain", token: Array("r".utf8)))
        #expect(h.engine.domainShutdown(DomID(5)) == [event])
        #expect(h.engine.domainShutdown(DomID(5)).isEmpty)
        h.ok(C.d0, .resume, "5\0")
        #expect(h.engine.domainShutdown(DomID(5)) == [event])
        #expect(h.engine.domainDestroyed(DomID(5)) == [event, .releaseDomain(DomID(5))])
        #expect(!h.engine.isIntroduced(DomID(5)))
        #expect(h.engine.domainDestroyed(DomID(5)).isEmpty)
    }

    @Test func releasedDomainLosesSpecialPermission() {
        var h = Harness()
        h.run([
            step(C.d0, .introduce, "1\0" + "100\0" + "1\0", .ok),
            step(C.d0, .setPerms, "@releaseDomain\0n0\0r1\0r2\0", .ok),
            step(C.d0, .release, "1\0", .ok),
            step(C.d0, .getPerms, "@releaseDomain\0", .payload("n0\0r2\0")),
        ])
    }

    @Test func features() {
        var h = Harness(features: [.reconnection, .error])
        h.run([
            step(C.d0, .getFeature, "", .payload("3\0")),
            step(C.d0, .getFeature, "\0", .payload("3\0")),
            step(C.g1, .getFeature, "", .payload("3\0")),
            step(C.g1, .getFeature, "0\0", .error(.EACCES)),
            step(C.d0, .getFeature, "9\0", .error(.ENOENT)),
            step(C.d0, .setFeature, "9\0" + "4\0", .error(.EINVAL)),  // WATCHDEPTH not supported
            step(C.d0, .setFeature, "9\0" + "1\0", .ok),
            step(C.d0, .introduce, "9\0" + "100\0" + "1\0", .ok),
            step(C.d0, .getFeature, "9\0", .payload("1\0")),
            step(C.d0, .setFeature, "9\0" + "2\0", .error(.EBUSY)),
            step(C.d0, .setFeature, "0\0" + "0\0", .error(.EBUSY)),
            step(C.d0, .getFeature, "1\0" + "2\0", .error(.EINVAL)),
        ])
        #expect(h.engine.serverFeatures(for: DomID(9)) == .reconnection)
    }

    @Test func quotaRequests() {
        var h = Harness()
        h.run([
            step(C.d0, .getQuota, "", .payload("nodes watches transactions node-size permissions\0")),
            step(C.d0, .getQuota, "nodes\0", .payload("1000\0")),
            step(C.d0, .getQuota, "node-size\0", .payload("2048\0")),
            step(C.d0, .getQuota, "bogus\0", .error(.EINVAL)),
            step(C.d0, .getQuota, "4\0nodes\0", .error(.ENOENT)),
            step(C.d0, .getQuota, "0\0watches\0", .payload("128\0")),
            step(C.d0, .setQuota, "transactions\0" + "20\0", .ok),
            step(C.d0, .getQuota, "transactions\0", .payload("20\0")),
            step(C.d0, .setQuota, "transactions\0x\0", .error(.EINVAL)),
            step(C.d0, .setQuota, "bogus\0" + "1\0", .error(.EINVAL)),
            step(C.d0, .setQuota, "4\0nodes\0" + "1\0", .error(.ENOENT)),
            step(C.d0, .setQuota, "\0", .error(.EINVAL)),
        ])
        #expect(h.engine.quotas.transactions == 20)
    }

    @Test func control() {
        var h = Harness()
        h.run([
            step(C.d0, .control, "help\0", .payload("check\nprint <string>\nhelp\n\0")),
            step(C.d0, .control, "check\0", .ok),
            step(C.d0, .control, "live-update\0", .error(.EINVAL)),
            step(C.d0, .control, "", .error(.EINVAL)),
            step(C.d0, .control, "print\0", .error(.EINVAL)),
        ])
        let effects = h.send(C.d0, .control, "print\0hello\0")
        #expect(effects.first == .log("hello"))
    }

    @Test(
        "types a client may not send get ENOSYS",
        arguments: [UInt32(15), 16, 20, 27, 28, 1000, 0xFFFF, .max]
    )
    func enosys(_ raw: UInt32) {
        var h = Harness()
        let request = XenstoreMessage(type: XenstoreMessageType(rawValue: raw), reqID: 5, txID: 9, payload: "/\0")
        let effects = h.engine.handle(request, from: C.g1)
        #expect(effects == [.send(to: C.g1, .error(.ENOSYS, replyingTo: request))])
    }

    @Test func unknownConnectionGetsNothing() {
        var h = Harness()
        #expect(h.engine.handle(XenstoreMessage(type: .read, payload: "/\0"), from: ConnectionID(999)).isEmpty)
        h.engine.disconnect(C.g1)
        #expect(h.engine.handle(XenstoreMessage(type: .read, payload: "/\0"), from: C.g1).isEmpty)
    }

    @Test func disconnectDropsWatchesSilently() {
        var h = Harness()
        h.ok(C.obs, .watch, "/d\0t\0")
        h.ok(C.obs, .transactionStart, "\0")
        h.engine.disconnect(C.obs)
        let (_, events, _) = h.call(C.d0, .write, "/d\0v")
        #expect(events.isEmpty)
        h.engine.connect(C.obs, domid: .dom0, privileged: true)
        #expect(h.engine.watchCount(of: C.obs) == 0)
        #expect(h.engine.openTransactions(of: C.obs).isEmpty)
    }

    @Test func directoryLimitsAndDirectoryPart() throws {
        var h = Harness()
        var names: [String] = []
        for index in 0..<300 {
            let name = "child-with-a-long-name-\(index)"
            names.append(name)
            h.ok(C.d0, .write, "/big/\(name)\0")
        }
        let listing = XenstorePayload.strings(names)
        #expect(listing.count > XenstoreInterface.payloadMax)
        h.run([step(C.d0, .directory, "/big\0", .error(.E2BIG))])

        var received: [UInt8] = []
        var generation: Substring?
        var rounds = 0
        while rounds < 10 {
            rounds += 1
            let reply = h.ok(C.d0, .directoryPart, "/big\0\(received.count)\0")
            let bytes = Array(reply.utf8)
            #expect(bytes.count <= XenstoreInterface.payloadMax)
            let nul = try #require(bytes.firstIndex(of: 0))
            let gen = reply.prefix(nul)
            if let generation { #expect(gen == generation) }
            generation = gen
            let chunk = bytes[(nul + 1)...]
            if chunk.count >= 2 && chunk.suffix(2) == [0, 0] {
                received += chunk.dropLast()
                break
            }
            #expect(chunk.last == 0)
            received += chunk
        }
        #expect(rounds == 2)
        #expect(received == listing)

        let past = h.ok(C.d0, .directoryPart, "/big\0" + "999999\0")
        #expect(past == "\(generation ?? "")\0\0")
        h.run([
            step(C.d0, .directoryPart, "/big\0" + "x\0", .error(.EINVAL)),
            step(C.d0, .directoryPart, "/big\0", .error(.EINVAL)),
            step(C.d0, .directoryPart, "/nope\0" + "0\0", .error(.ENOENT)),
        ])
        // An offset inside a name gives the rest of that name, then the whole names after it.
        h.ok(C.d0, .write, "/small/alpha\0")
        h.ok(C.d0, .write, "/small/be\0")
        let small = Array("alpha\0be\0".utf8)
        for offset in 0...small.count + 1 {
            let reply = Array(h.ok(C.d0, .directoryPart, "/small\0\(offset)\0").utf8)
            let nul = try #require(reply.firstIndex(of: 0))
            #expect(Array(reply[(nul + 1)...]) == Array(small[min(offset, small.count)...]) + [0], "offset \(offset)")
        }
        // A change to the child list changes the generation.
        h.ok(C.d0, .write, "/big/one-more\0")
        let after = h.ok(C.d0, .directoryPart, "/big\0" + "0\0")
        #expect(after.prefix { $0 != "\0" } != generation)
    }

    /// Chunks read in order start where the last stopped (a shortcut the engine keeps);
    /// a store that changed between two chunks must give what a fresh walk gives,
    /// here with the first name gone, which moves every later name up by one.
    @Test func aDirectoryPartAfterAChangeMatchesAFreshWalk() throws {
        var h = Harness()
        let names = (0..<300).map { "child-with-a-long-name-\($0)" }
        for name in names { h.ok(C.d0, .write, "/big/\(name)\0") }
        func chunk(_ offset: Int, tx: UInt32 = 0) -> [UInt8] {
            let reply = Array(h.ok(C.d0, .directoryPart, "/big\0\(offset)\0", tx: tx).utf8)
            return Array(reply[((reply.firstIndex(of: 0) ?? 0) + 1)...])
        }
        let first = chunk(0)
        let second = chunk(first.count)
        let whole = first + second.dropLast() == XenstorePayload.strings(names)
        #expect(whole, "in-order chunks lost or repeated names")
        // Again, with a change between the chunks.
        let again = chunk(0)
        h.ok(C.d0, .rm, "/big/\(names[0])\0")
        let rest = chunk(again.count)
        let fresh = XenstorePayload.strings(Array(names.dropFirst()))
        let matches = rest.dropLast() == fresh[again.count...]
        #expect(matches, "a chunk after a change skipped or repeated names")
        // Inside a transaction, chunks walk the transaction's own view.
        let tx = try #require(UInt32(h.ok(C.d0, .transactionStart, "\0").prefix { $0 != "\0" }))
        h.ok(C.d0, .write, "/big/aaa\0", tx: tx)
        let inside = chunk(0, tx: tx)
        let insideRest = chunk(inside.count, tx: tx)
        let seen = inside + insideRest.dropLast() == XenstorePayload.strings(Array(names.dropFirst()) + ["aaa"])
        #expect(seen, "chunks in a transaction do not show its own view")
    }
}
