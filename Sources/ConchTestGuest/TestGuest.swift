//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Foundation
import GuestFrontend
import Hypervisors
import SystemExtras
import XenABI
import XenHypervisor
import XenRing
import XenSim
import XenstoreClient
import XenstoreWire

/// `conch-test-guest`: scripted guest programs for the tests (isolation,
/// corrupted rings, resource exhaustion, XSA-178 tampering). The hypervisor runs
/// `conch-test-guest <scenario>` as a domain's program; each prints what it did as
/// `key=value` lines on stdout (the domain's stdio log). A test-support
/// executable: it is built for the tests and never installed with `conch`.
@main
struct TestGuest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conch-test-guest",
        abstract: "Scripted guest programs for Conch's tests (run as a domain's kernel)."
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
        /// Try to reach the host from inside the sandbox (first argument: the run
        /// directory); print each attempt's outcome, then wait to be killed.
        case escape
        /// Write a line with console_io; print whether the hypervisor allowed it.
        case consoleIO = "console-io"
        /// Rewrite this domain's own console device nodes as an XSA-178 attacker
        /// would (see `tamper`), then wait to be killed.
        case tamperBackend = "tamper-backend"
        /// Allocate event channels until refused; print how many it got.
        case exhaustPorts = "exhaust-ports"
        /// Grant a page to itself and map it until refused; print how many it got.
        case exhaustMaps = "exhaust-maps"
        /// Write the first argument's KiB to the hypervisor console as fast as it can.
        case floodConsole = "flood-console"
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
        case .escape:
            escape(runDirectory: arguments.first ?? "/nonexistent")
            fflush(nil)
            while true { sleep(60) }
        case .consoleIO:
            do {
                try hypervisor.consoleWrite(Array("console_io from d\(info.domid.rawValue)\n".utf8))
                print("console_io=allowed")
            } catch {
                print("console_io=refused \(error)")
            }
        case .tamperBackend:
            try await tamper(hypervisor)
            fflush(nil)
            while true { sleep(60) }
        case .exhaustPorts:
            var held: [any EventChannelEndpoint] = []
            var failure = ""
            for _ in 0..<5000 {
                do {
                    held.append(try hypervisor.allocateUnbound(remote: .dom0))
                } catch {
                    failure = "\(error)"
                    break
                }
            }
            print("ports_allocated=\(held.count)")
            print("refusal=\(failure)")
            fflush(nil)
            while true { sleep(60) }
        case .exhaustMaps:
            let table = try hypervisor.mapOwnFrame(info.grantTableFrame)
            GrantCheck.grantAccess(table: table, ref: GrantRef(10), grantee: info.domid, frame: info.firstFreeFrame)
            var held: [GuestPage] = []
            var failure = ""
            for _ in 0..<5000 {
                do {
                    held.append(try hypervisor.mapGrant(info.domid, ref: GrantRef(10), readOnly: false))
                } catch {
                    failure = "\(error)"
                    break
                }
            }
            print("maps_held=\(held.count)")
            print("refusal=\(failure)")
            // Letting go of them gives the quota back.
            held.removeAll()
            let again = (try? hypervisor.mapGrant(info.domid, ref: GrantRef(10), readOnly: false)) != nil
            print("map_after_release=\(again)")
            fflush(nil)
            while true { sleep(60) }
        case .floodConsole:
            let kibibytes = Int(arguments.first ?? "1024") ?? 1024
            let line = Array(String(repeating: "F", count: 1023).utf8) + [10]
            for _ in 0..<kibibytes { try? hypervisor.consoleWrite(line) }
            print("flooded=\(kibibytes)")
            fflush(nil)
            while true { sleep(60) }
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

    /// Prints `<name>=ALLOWED` if `body` succeeds, `<name>=refused <why>` if it throws.
    private func attempt(_ name: String, _ body: () throws -> Void) {
        do {
            try body()
            print("\(name)=ALLOWED")
        } catch {
            print("\(name)=refused \(error)")
        }
    }

    /// From inside the sandbox, everything of the host's that a guest must not
    /// reach. Each line is `<attempt>=<refused|ALLOWED> <detail>`, or a fact.
    private func escape(runDirectory: String) {
        struct Refused: Error, CustomStringConvertible { let description: String }
        for (socket, type) in [
            ("hypervisor.sock", SOCK_SEQPACKET), ("xenstored.sock", SOCK_STREAM), ("consoled.sock", SOCK_STREAM),
            ("consoled-control.sock", SOCK_STREAM), ("consoled-keeper.sock", SOCK_SEQPACKET),
        ] {
            attempt("connect_\(socket)") {
                let fd = try UnixSocketPath.connect(runDirectory + "/" + socket, type: Int32(type.rawValue))
                close(fd)
            }
        }
        attempt("list_run_directory") {
            _ = try FileManager.default.contentsOfDirectory(atPath: runDirectory)
        }
        attempt("write_outside_tmp") {
            guard FileManager.default.createFile(atPath: "/etc/conch-escape", contents: Data("x".utf8)) else {
                throw Refused(description: "read-only")
            }
        }
        let environment = ProcessInfo.processInfo.environment
        print("environment_keys=\(environment.keys.sorted().joined(separator: ","))")
        let descriptors = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [])
            .compactMap { Int($0) }.sorted()
        print("open_descriptors=\(descriptors.map(String.init).joined(separator: ","))")
        for fd in descriptors {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? "?"
            print("descriptor_\(fd)=\(target)")
        }
        print("uid=\(getuid()) pid=\(getpid())")
        let visible = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int($0) }
        print("visible_processes=\(visible.count)")
        attempt("signal_host_init") {
            guard kill(1, 0) == 0, getpid() != 1, visible.count > 10 else { throw Refused(description: "not visible") }
        }
    }

    /// An XSA-178 attacker: this domain owns `device/console/<n>`, so it points
    /// `backend` elsewhere and makes up devices, hoping a backend or a tool follows.
    /// First argument, the attack:
    /// - `unlink FILE`: channel 1's `backend` aimed at a directory of the guest's own
    ///   asking for a socket channel at FILE, then the channel closed and opened
    ///   again — a keeper that follows it unlinks FILE.
    /// - `close BACKEND`: channel 1's `backend` aimed at another domain's backend
    ///   directory, then closed — a backend that follows it closes that channel.
    /// - `impersonate NAME SOCKET`: channel 1's `backend` aimed at a directory of
    ///   the guest's own naming it NAME with a socket at SOCKET — a tool that
    ///   follows it connects the user to the attacker's socket.
    private func tamper(_ hypervisor: any GuestHypervisor) async throws {
        let client = try await XenstoreClient.connectRing(hypervisor: hypervisor)
        let home = try await client.getDomainPath(hypervisor.startInfo.domid)
        let attack = arguments.first ?? ""
        let parameters = Array(arguments.dropFirst())
        switch (attack, parameters.count) {
        case ("unlink", 1):
            try await client.write("data/evil/backend/connection", "socket")
            try await client.write("data/evil/backend/path", parameters[0])
            try await client.write("data/evil/backend/name", "org.evil.0")
            try await client.write("device/console/1/backend", home + "/data/evil/backend")
            // Closed, then new again: a backend that re-reads `backend` now reads ours.
            try await client.write("device/console/1/state", "6")
            try await Task.sleep(for: .milliseconds(300))
            try await client.write("device/console/1/state", "1")
        case ("close", 1):
            // Connect channel 1 for real first (a backend only acts on a connected one's close).
            let info = hypervisor.startInfo
            let backend = try await client.readString("device/console/1/backend")
            let frontend = try await ChannelFrontend(
                devid: 1,
                domainPath: home,
                hypervisor: hypervisor,
                store: client,
                frame: info.firstFreeFrame,
                grant: .firstUnreserved,
                grantTable: try hypervisor.mapOwnFrame(info.grantTableFrame)
            )
            for _ in 0..<1000 where (try? await client.readString(backend + "/state")) != "4" {
                try await Task.sleep(for: .milliseconds(10))
            }
            print("own_channel_state=\((try? await client.readString(backend + "/state")) ?? "none")")
            try await client.write("device/console/1/backend", parameters[0])
            try await client.write("device/console/1/state", "6")
            _ = frontend
        case ("impersonate", 2):
            try await client.write("data/evil/named/name", parameters[0])
            try await client.write("data/evil/named/connection", "socket")
            try await client.write("data/evil/named/path", parameters[1])
            try await client.write("device/console/1/backend", home + "/data/evil/named")
            try await client.write("device/console/1/backend-id", "7")
        default:
            print("tampered=error unknown attack \(arguments)")
            return
        }
        print("tampered=\(attack)")
    }

    /// Every attempt must be refused; each line is `<attempt>=<refused|ALLOWED> <detail>`.
    private func isolation(_ hypervisor: any GuestHypervisor, other: DomID) throws {
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
