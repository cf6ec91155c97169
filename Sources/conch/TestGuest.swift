//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Foundation
import XenABI
import XenHypervisor
import XenRing
import XenSim
import XenstoreClient
import XenstoreWire

/// Small guest programs for tests and benchmarks: the hypervisor runs
/// `conch test-guest <scenario>` as a domain's program. Each prints what it did as
/// `key=value` lines on stdout (the domain's stdio log).
struct TestGuest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-guest",
        abstract: "Internal: scripted guest programs for tests.",
        shouldDisplay: false
    )

    enum Scenario: String, ExpressibleByArgument, CaseIterable {
        /// Print the start info, write a console_io line, then wait to be killed.
        case idle
        /// Exit at once with the status given as the first argument.
        case exit
        /// Announce a shutdown reason (first argument), then exit 0.
        case shutdown
        /// Try everything a guest must not be allowed to do; print each refusal.
        case isolation
        /// Use xenstore over the guest's ring: allowed and refused operations,
        /// then (with argument `stay`) keep the connection open, issuing a read
        /// whenever the file named by the second argument appears.
        case xenstore
        /// Write half a xenstore request header into the ring, then wait to be killed.
        case halfRequest = "half-request"
        /// Make the xenstore ring's request indices invalid (a jump by 2^31), notify.
        case corruptRing = "corrupt-ring"
        /// Send a header announcing a 5000-byte payload, notify.
        case oversizeHeader = "oversize-header"
        /// Leave half a packet in the ring, ask for RECONNECT, then use a fresh client.
        case reconnect
        /// Make console 0's `out` indices invalid (a jump by 2^31) and notify.
        case corruptConsole = "corrupt-console"
    }

    @Argument var scenario: Scenario
    @Argument var arguments: [String] = []

    func run() async throws {
        let hypervisor = try HypervisorFactory.guest()
        let info = hypervisor.startInfo
        print("domid=\(info.domid.rawValue)")
        switch scenario {
        case .idle:
            print("console_frame=\(info.consoleFrame.rawValue) console_port=\(info.consolePort.rawValue)")
            print("xenstore_frame=\(info.xenstoreFrame.rawValue) xenstore_port=\(info.xenstorePort.rawValue)")
            try hypervisor.consoleWrite(Array("hello from d\(info.domid.rawValue)\n".utf8))
            fflush(nil)
            while true { sleep(60) }
        case .exit:
            Foundation.exit(Int32(arguments.first ?? "0") ?? 0)
        case .shutdown:
            try hypervisor.requestShutdown(ShutdownReason(rawValue: arguments.first ?? "poweroff") ?? .poweroff)
        case .isolation:
            try isolation(hypervisor, other: DomID(UInt16(arguments.first ?? "0") ?? 0))
        case .xenstore:
            try await xenstore(hypervisor)
        case .halfRequest:
            let page = try hypervisor.mapOwnFrame(info.xenstoreFrame)
            let channel = try hypervisor.attach(info.xenstorePort)
            let request = XenstoreMessage(type: .read, reqID: 1, payload: Array("/local\0".utf8)).encoded()
            _ = try XenstoreRing(memory: page).frontend.output.write(request.prefix(8))
            try channel.notify()
            print("half_written=8")
            fflush(nil)
            while true { sleep(60) }
        case .corruptRing:
            let page = try hypervisor.mapOwnFrame(info.xenstoreFrame)
            let channel = try hypervisor.attach(info.xenstorePort)
            let consumer = page.load32(at: XenstoreInterface.reqConsOffset, ordering: .acquiring)
            page.store32(consumer &+ (1 << 31), at: XenstoreInterface.reqProdOffset, ordering: .releasing)
            try channel.notify()
            print("corrupted=\(consumer &+ (1 << 31))")
            fflush(nil)
            while true { sleep(60) }
        case .oversizeHeader:
            let page = try hypervisor.mapOwnFrame(info.xenstoreFrame)
            let channel = try hypervisor.attach(info.xenstorePort)
            var header = XenstoreMessage(type: .read, reqID: 1, payload: []).encoded()
            header.replaceSubrange(12..<16, with: withUnsafeBytes(of: UInt32(5000).littleEndian, Array.init))
            _ = try XenstoreRing(memory: page).frontend.output.write(header)
            try channel.notify()
            print("oversize_sent=5000")
            fflush(nil)
            while true { sleep(60) }
        case .reconnect:
            try await reconnect(hypervisor)
        case .corruptConsole:
            let page = try hypervisor.mapOwnFrame(info.consoleFrame)
            let channel = try hypervisor.attach(info.consolePort)
            // Wait for a backend first, so the corruption is what it sees.
            while page.load8(at: ConsoleInterface.connectionOffset, ordering: .acquiring) != 0 { usleep(10_000) }
            let consumer = page.load32(at: ConsoleInterface.outConsOffset, ordering: .acquiring)
            page.store32(consumer &+ (1 << 31), at: ConsoleInterface.outProdOffset, ordering: .releasing)
            try channel.notify()
            print("corrupted=console")
            fflush(nil)
            while true { sleep(60) }
        }
        fflush(nil)
    }

    private func xenstore(_ hypervisor: any GuestHypervisor) async throws {
        let client = try await XenstoreClient.connectRing(hypervisor: hypervisor)
        let me = hypervisor.startInfo.domid
        func report(_ name: String, _ body: () async throws -> String) async {
            do {
                print("\(name)=\(try await body())")
            } catch {
                print("\(name)=error \(error)")
            }
            fflush(nil)
        }
        await report("domain_path") { try await client.getDomainPath(me) }
        await report("write_own") {
            try await client.write("data/hello", "world")
            return "ok"
        }
        await report("read_own") { try await client.readString("data/hello") }
        await report("owner") { try await client.permissions("data/hello").owner.description }
        await report("read_dom0") { try await client.readString("/local/domain/0/secret") }
        await report("read_missing_dom0") { try await client.readString("/local/domain/0/absent") }
        await report("write_other") {
            try await client.write("/local/domain/0/intrusion", "x")
            return "ok"
        }
        await report("introduce") {
            try await client.introduce(DomID(42), frame: 1, port: EvtchnPort(1))
            return "ok"
        }
        await report("watch") {
            let events = try await client.watch("data", token: "w")
            var iterator = events.makeAsyncIterator()
            let first = await iterator.next()?.path ?? "none"
            try await client.write("data/x", "1")
            let second = await iterator.next()?.path ?? "none"
            return "\(first),\(second)"
        }
        print("done")
        fflush(nil)
        guard arguments.first == "stay" else { return }
        // Keep the ring open; read again each time `<trigger>-<round>` appears, so a
        // test can ask for a request after killing xenstored.
        let trigger = arguments.count > 1 ? arguments[1] : ""
        var round = 0
        while true {
            if !trigger.isEmpty, FileManager.default.fileExists(atPath: "\(trigger)-\(round + 1)") {
                round += 1
                await report("late_read_\(round)") { try await client.readString("data/hello") }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    private func reconnect(_ hypervisor: any GuestHypervisor) async throws {
        let info = hypervisor.startInfo
        let page = try hypervisor.mapOwnFrame(info.xenstoreFrame)
        let channel = try hypervisor.attach(info.xenstorePort)
        let partial = XenstoreMessage(type: .read, reqID: 9, payload: Array("/local\0".utf8)).encoded().prefix(10)
        _ = try XenstoreRing(memory: page).frontend.output.write(partial)
        try channel.notify()
        page.store32(
            XenstoreConnection.reconnect.rawValue,
            at: XenstoreInterface.connectionOffset,
            ordering: .releasing
        )
        try channel.notify()
        var answered = false
        for _ in 0..<1000 {
            if page.load32(at: XenstoreInterface.connectionOffset, ordering: .acquiring) == 0 {
                answered = true
                break
            }
            _ = try channel.wait(timeoutMilliseconds: 10)
        }
        let features = page.load32(at: XenstoreInterface.serverFeaturesOffset, ordering: .acquiring)
        print("reconnected=\(answered) features=\(features)")
        let client = try await XenstoreClient(
            transport: RingClientTransport(page: page, channel: channel, hypervisor: hypervisor)
        )
        print("after_reconnect=\((try? await client.getDomainPath(info.domid)) ?? "failed")")
        fflush(nil)
        while true { try await Task.sleep(for: .seconds(60)) }
    }

    /// Every attempt must be refused; each line is `<attempt>=<refused|ALLOWED> <detail>`.
    private func isolation(_ hypervisor: any GuestHypervisor, other: DomID) throws {
        func attempt(_ name: String, _ body: () throws -> Void) {
            do {
                try body()
                print("\(name)=ALLOWED")
            } catch {
                print("\(name)=refused \(error)")
            }
        }
        let info = hypervisor.startInfo
        attempt("map_ungranted_page") { _ = try hypervisor.mapGrant(other, ref: GrantRef(5), readOnly: true) }
        attempt("map_grant_for_dom0") { _ = try hypervisor.mapGrant(other, ref: .console, readOnly: false) }
        attempt("map_own_grant_for_dom0") { _ = try hypervisor.mapGrant(info.domid, ref: .xenstore, readOnly: false) }
        attempt("map_beyond_own_memory") { _ = try hypervisor.mapOwnFrame(PageFrame(UInt64(info.pageCount))) }
        if let privileged = hypervisor as? any ForeignMemory {
            attempt("map_foreign_frame") { _ = try privileged.mapForeign(other, frame: PageFrame(1), readOnly: true) }
        }
        if let control = hypervisor as? any DomainControl {
            attempt("list_domains") { _ = try control.listDomains() }
            attempt("destroy_other") { try control.destroy(other) }
            attempt("alloc_port_in_other") { _ = try control.allocateUnboundPort(in: other, remote: info.domid) }
        }
        // `other`'s console port is offered to dom0, not to us.
        attempt("bind_port_not_offered") {
            _ = try hypervisor.bindInterdomain(remote: other, remotePort: EvtchnPort(1))
        }
        attempt("attach_port_not_owned") { _ = try hypervisor.attach(EvtchnPort(999)) }
        attempt("close_port_not_owned") { try hypervisor.close(EvtchnPort(999)) }
        attempt("read_hypervisor_console") { _ = try hypervisor.readConsole(clear: false) }
        // What a guest may do, to show the checks are not blanket refusals.
        do {
            _ = try hypervisor.mapOwnFrame(info.consoleFrame)
            _ = try hypervisor.attach(info.consolePort)
            print("own_resources=ok")
        } catch {
            print("own_resources=FAILED \(error)")
        }
    }
}
