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
import XenABI
import XenHypervisor
import XenMemory
import XenSim
import XenTestKit
import XenstoreClient
import XenstoreWire

/// xenstored serving guests over their shared rings, with domains from the
/// hypervisor: real processes throughout.
@Suite("xenstore over guest rings")
struct XenstoreRingTests {
    /// Builds a domain the way the toolstack will: home directory owned by the
    /// guest, INTRODUCE to xenstored, then unpause.
    static func introduceGuest(
        _ host: HostStack,
        _ store: XenstoreClient,
        name: String,
        scenario: String,
        _ arguments: [String] = []
    ) async throws -> DomainInfo {
        let hypervisor = try host.privilegedHypervisor()
        let domain = try hypervisor.createDomain(try HypervisorTests.spec(name, scenario, arguments))
        let home = "/local/domain/\(domain.domid.rawValue)"
        try await store.mkdir(home)
        try await store.setPermissions(home, XenstorePermissions(owner: domain.domid, acl: [.init(.read, .dom0)]))
        try await store.introduce(
            domain.domid,
            frame: domain.start.xenstoreFrame.rawValue,
            port: domain.start.xenstorePort
        )
        try hypervisor.unpause(domain.domid)
        return domain
    }

    static func lines(_ host: HostStack, _ name: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in host.guestOutput(name).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            result[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return result
    }

    @Test func guestUsesXenstoreOverItsRingWithItsOwnPermissions() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        try await store.write("/local/domain/0/secret", "dom0 only")
        let introduced = try await store.watch("@introduceDomain", token: "intro")
        var introducedEvents = introduced.makeAsyncIterator()
        #expect(await introducedEvents.next()?.path == "@introduceDomain")

        // `stay`: a guest that exits is destroyed, and its nodes with it.
        let domain = try await Self.introduceGuest(host, store, name: "ringer", scenario: "xenstore", ["stay"])
        #expect(await introducedEvents.next()?.path == "@introduceDomain")
        #expect(try await store.isDomainIntroduced(domain.domid))
        let finished = host.eventually { host.guestOutput("ringer").contains("done\n") }
        #expect(finished, "guest output: \(host.guestOutput("ringer")) xenstored: \(host.xenstored?.log ?? "")")
        let result = Self.lines(host, "ringer")
        let d = domain.domid.rawValue
        #expect(result["domain_path"] == "/local/domain/\(d)")
        #expect(result["write_own"] == "ok")
        #expect(result["read_own"] == "world")
        #expect(result["owner"] == "n\(d)", "the guest's node is owned by the guest")
        #expect(result["read_dom0"] == "error EACCES")
        #expect(result["read_missing_dom0"] == "error EACCES", "ENOENT would reveal that the node does not exist")
        #expect(result["write_other"] == "error EACCES")
        #expect(result["introduce"] == "error EACCES")
        #expect(result["watch"] == "data,data/x", "relative watch paths come back relative")
        #expect(try await store.readString("/local/domain/\(d)/data/hello") == "world")
        #expect(try await !store.exists("/local/domain/0/intrusion"))
    }

    /// Destroying a domain removes its nodes and fires @releaseDomain; a backend
    /// holding its pages keeps a valid mapping and can drop it when it likes.
    @Test func destroyedDomainIsReleased() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let released = try await store.watch("@releaseDomain", token: "rel")
        var releasedEvents = released.makeAsyncIterator()
        #expect(await releasedEvents.next()?.path == "@releaseDomain")
        let domain = try await Self.introduceGuest(host, store, name: "mortal", scenario: "xenstore", ["stay"])
        #expect(try host.eventually { host.guestOutput("mortal").contains("done\n") })
        let hypervisor = try host.privilegedHypervisor()
        var console: GuestPage? = try hypervisor.mapGrant(domain.domid, ref: .console, readOnly: false)
        console?.store8(7, at: 100, ordering: .relaxed)

        try hypervisor.destroy(domain.domid)
        #expect(await releasedEvents.next()?.path == "@releaseDomain")
        #expect(try await !store.exists("/local/domain/\(domain.domid.rawValue)"), "the domain's own nodes are removed")
        #expect(try await !store.isDomainIntroduced(domain.domid))
        #expect(console?.load8(at: 100, ordering: .relaxed) == 7, "the backend's mapping stays valid until it unmaps")
        console = nil
        // xenstored keeps serving.
        try await store.write("/local/after", "fine")
        #expect(try await store.readString("/local/after") == "fine")
    }

    /// A guest killed in the middle of a request (half a header in its ring):
    /// xenstored cleans up and keeps serving everyone else.
    @Test func guestKilledMidRequest() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let half = try await Self.introduceGuest(host, store, name: "half", scenario: "half-request")
        let healthy = try await Self.introduceGuest(host, store, name: "healthy", scenario: "xenstore", ["stay"])
        #expect(try host.eventually { host.guestOutput("half").contains("half_written=8") })
        #expect(try host.eventually { host.guestOutput("healthy").contains("done\n") })
        try host.privilegedHypervisor().destroy(half.domid)
        #expect(try await host.eventuallyAsync { try await !store.isDomainIntroduced(half.domid) })
        #expect(try await store.isDomainIntroduced(healthy.domid))
        #expect(try await store.readString("/local/domain/\(healthy.domid.rawValue)/data/hello") == "world")
    }

    /// Killing xenstored: the guest's next request fails, it does not hang.
    @Test func killedXenstoredGivesGuestsErrorsNotHangs() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        let trigger = host.shared.path + "/trigger"
        _ = try await Self.introduceGuest(host, store, name: "orphan", scenario: "xenstore", ["stay", trigger])
        #expect(try host.eventually { host.guestOutput("orphan").contains("done\n") })
        FileManager.default.createFile(atPath: trigger + "-1", contents: nil)
        #expect(try host.eventually { host.guestOutput("orphan").contains("late_read_1=world") })
        store.close()
        host.xenstored?.kill()
        FileManager.default.createFile(atPath: trigger + "-2", contents: nil)
        #expect(try host.eventually { host.guestOutput("orphan").contains("late_read_2=error") })
        #expect(host.guestOutput("orphan").contains("late_read_2=error connection to xenstored closed"))
    }

    /// Invalid indices in one guest's ring abandon that ring only, with the
    /// `error` field set to RINGIDX; the other guests keep being served.
    @Test func invalidRingIndicesStopOnlyThatRing() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let trigger = host.shared.path + "/trigger"
        let good = try await Self.introduceGuest(host, store, name: "good", scenario: "xenstore", ["stay", trigger])
        #expect(try host.eventually { host.guestOutput("good").contains("done\n") })
        let bad = try await Self.introduceGuest(host, store, name: "bad", scenario: "corrupt-ring")
        #expect(try host.eventually { host.guestOutput("bad").contains("corrupted=") })
        let page = try host.privilegedHypervisor().mapForeign(
            bad.domid,
            frame: bad.start.xenstoreFrame,
            readOnly: true
        )
        #expect(
            try host.eventually {
                page.load32(at: XenstoreInterface.errorOffset, ordering: .acquiring)
                    == XenstoreRingError.ringIndex.rawValue
            }
        )
        FileManager.default.createFile(atPath: trigger + "-1", contents: nil)
        #expect(try host.eventually { host.guestOutput("good").contains("late_read_1=world") })
        #expect(try await store.readString("/local/domain/\(good.domid.rawValue)/data/hello") == "world")
    }

    /// A header announcing more than 4096 bytes: that ring gets `error` = PROTO.
    @Test func oversizeHeaderOnARingSetsProto() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let bad = try await Self.introduceGuest(host, store, name: "big", scenario: "oversize-header")
        #expect(try host.eventually { host.guestOutput("big").contains("oversize_sent=") })
        let page = try host.privilegedHypervisor().mapForeign(
            bad.domid,
            frame: bad.start.xenstoreFrame,
            readOnly: true
        )
        #expect(
            try host.eventually {
                page.load32(at: XenstoreInterface.errorOffset, ordering: .acquiring) == XenstoreRingError.proto.rawValue
            }
        )
        try await store.write("/local/still", "served")
        #expect(try await store.readString("/local/still") == "served")
    }

    /// RECONNECT: the server drops the half packet and answers CONNECTED; a fresh
    /// client then works on the same ring. Features advertised: reconnection + error.
    @Test func reconnectIsHonoured() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let domain = try await Self.introduceGuest(host, store, name: "again", scenario: "reconnect")
        #expect(try host.eventually { host.guestOutput("again").contains("after_reconnect=") })
        let result = Self.lines(host, "again")
        #expect(result["reconnected"] == "true features=3")
        #expect(result["after_reconnect"] == "/local/domain/\(domain.domid.rawValue)")
    }
}
