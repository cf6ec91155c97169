//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Hypervisors
import SystemExtras
import Testing
import XenABI
import XenHypervisor
import XenMemory
import XenRing
import XenSim
import XenTestKit

/// `conch hypervisor` as a real process, driven through the privileged seam.
@Suite("Simulated hypervisor")
struct HypervisorTests {
    static func spec(
        _ name: String,
        _ scenario: String,
        _ arguments: [String] = [],
        preserve: Bool = false
    ) throws
        -> DomainSpec
    {
        DomainSpec(
            name: name,
            uuid: UUID().uuidString.lowercased(),
            program: try ConchExecutable.testGuestPath(),
            arguments: [scenario] + arguments,
            onPoweroff: preserve ? .preserve : .destroy,
            onReboot: preserve ? .preserve : .restart,
            onCrash: preserve ? .preserve : .destroy,
            hypervisorConsole: true
        )
    }

    @Test func domainLifecycle() throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        let created = try hypervisor.createDomain(try Self.spec("life", "idle"))
        #expect(created.domid == DomID(1), "domids are allocated from 1")
        #expect(created.state == .paused && created.pid == nil, "no guest process before unpause")
        #expect(created.start.consolePort != created.start.xenstorePort)
        try hypervisor.unpause(created.domid)
        let running = try #require(try hypervisor.listDomains().first)
        #expect(running.state == .running)
        let pid = try #require(running.pid)
        #expect(try host.eventually { host.guestOutput("life").contains("xenstore_port=") })
        #expect(host.guestOutput("life").contains("domid=1\n"))
        // console_io output lands in the hypervisor console with the (d<N>) prefix.
        #expect(
            try host.eventually {
                String(decoding: try hypervisor.readConsole(clear: false), as: UTF8.self).contains(
                    "(d1) hello from d1\n"
                )
            }
        )
        try hypervisor.pause(created.domid)
        #expect(try hypervisor.listDomains().first?.state == .paused)
        try hypervisor.unpause(created.domid)
        #expect(try hypervisor.listDomains().first?.pid == pid, "unpausing a paused guest continues the same process")
    }

    @Test func duplicateNamesAreRefused() throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        _ = try hypervisor.createDomain(try Self.spec("twin", "idle"))
        #expect(throws: HypervisorError.invalidArgument("a domain named 'twin' already exists")) {
            _ = try hypervisor.createDomain(try Self.spec("twin", "idle"))
        }
    }

    @Test func destroyKillsAndReapsTheGuest() throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        let domain = try hypervisor.createDomain(try Self.spec("doomed", "idle"))
        try hypervisor.unpause(domain.domid)
        let pid = try #require(try hypervisor.listDomains().first?.pid)
        #expect(kill(pid, 0) == 0)
        try hypervisor.destroy(domain.domid)
        #expect(try hypervisor.listDomains().isEmpty)
        #expect(kill(pid, 0) == -1 && errno == ESRCH, "the guest process is gone and reaped")
        #expect(throws: HypervisorError.noSuchDomain(domain.domid)) { try hypervisor.unpause(domain.domid) }
    }

    @Test(arguments: [
        ("exit", ["0"], ShutdownReason.poweroff), ("exit", ["3"], .crash), ("shutdown", ["reboot"], .reboot),
    ])
    func exitStatusBecomesTheShutdownReason(scenario: String, arguments: [String], reason: ShutdownReason) throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        let domain = try hypervisor.createDomain(try Self.spec("ending", scenario, arguments, preserve: true))
        try hypervisor.unpause(domain.domid)
        #expect(try host.eventually { try hypervisor.listDomains().first?.state == .shutdown })
        let info = try #require(try hypervisor.listDomains().first)
        #expect(info.shutdownReason == reason)
        #expect(info.pid == nil)
    }

    @Test func defaultActionsDestroyAnExitedGuest() throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        let domain = try hypervisor.createDomain(try Self.spec("brief", "exit", ["0"]))
        try hypervisor.unpause(domain.domid)
        #expect(try host.eventually { try hypervisor.listDomains().isEmpty }, "on_poweroff=destroy removes the domain")
    }

    /// Grant 0 and 1 are filled at build; the console page starts DISCONNECTED
    /// (a legacy builder leaves it zeroed); the checks on a grant's grantee and
    /// read-only flag are enforced.
    @Test func grantsAndTheConsolePage() throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        let domain = try hypervisor.createDomain(try Self.spec("granted", "idle"))
        let console = try hypervisor.mapGrant(domain.domid, ref: .console, readOnly: false)
        #expect(ConsoleRing(memory: console).connection == .disconnected)
        let viaFrame = try hypervisor.mapForeign(domain.domid, frame: domain.start.consoleFrame, readOnly: false)
        viaFrame.store8(0, at: ConsoleInterface.connectionOffset, ordering: .releasing)
        #expect(ConsoleRing(memory: console).connection == .connected, "grant 0 and the console frame are one page")
        _ = try hypervisor.mapGrant(domain.domid, ref: .xenstore, readOnly: false)

        var legacy = try Self.spec("legacy", "idle")
        legacy.legacyConsolePage = true
        let old = try hypervisor.createDomain(legacy)
        #expect(
            ConsoleRing(memory: try hypervisor.mapGrant(old.domid, ref: .console, readOnly: true)).connection
                == .connected
        )

        // Write grant entries as the guest would, through its grant-table frame.
        let table = try hypervisor.mapForeign(domain.domid, frame: domain.start.grantTableFrame, readOnly: false)
        func grant(_ ref: Int, flags: GrantFlags, domid: DomID, frame: UInt32) {
            table.store32(frame, at: ref * 8 + 4, ordering: .relaxed)
            table.store32(UInt32(flags.rawValue) | UInt32(domid.rawValue) << 16, at: ref * 8, ordering: .releasing)
        }
        grant(10, flags: [.permitAccess, .readOnly], domid: .dom0, frame: 5)
        grant(11, flags: .permitAccess, domid: DomID(7), frame: 5)
        grant(12, flags: .invalid, domid: .dom0, frame: 5)
        grant(13, flags: .permitAccess, domid: .dom0, frame: 100_000)
        #expect(throws: HypervisorError.permissionDenied("grant 10 of d1 is read-only")) {
            _ = try hypervisor.mapGrant(domain.domid, ref: GrantRef(10), readOnly: false)
        }
        let readOnly = try hypervisor.mapGrant(domain.domid, ref: GrantRef(10), readOnly: true)
        #expect(!readOnly.isWritable)
        #expect(throws: HypervisorError.permissionDenied("grant 11 of d1 is for d7, not d0")) {
            _ = try hypervisor.mapGrant(domain.domid, ref: GrantRef(11), readOnly: true)
        }
        #expect(throws: HypervisorError.permissionDenied("grant 12 of d1 does not permit access")) {
            _ = try hypervisor.mapGrant(domain.domid, ref: GrantRef(12), readOnly: true)
        }
        #expect(throws: HypervisorError.self) {
            _ = try hypervisor.mapGrant(domain.domid, ref: GrantRef(13), readOnly: true)
        }
        #expect(throws: HypervisorError.self) {
            _ = try hypervisor.mapGrant(domain.domid, ref: GrantRef(600), readOnly: true)
        }
    }

    /// Two dom0 processes bind an interdomain channel and wake each other through
    /// eventfds; closing one end makes the other unbound again.
    @Test func eventChannelsNotifyBothWays() throws {
        let host = try HostStack()
        defer { host.stop() }
        let left = try host.privilegedHypervisor()
        let right = try host.privilegedHypervisor()
        let a = try left.allocateUnbound(remote: .dom0)
        let b = try right.bindInterdomain(remote: .dom0, remotePort: a.port)
        #expect(try !b.consumePending())
        try a.notify()
        #expect(try b.wait(timeoutMilliseconds: 30_000))
        try b.notify()
        try b.notify()
        #expect(try a.wait(timeoutMilliseconds: 30_000))
        #expect(try !a.consumePending(), "notifications coalesce")
        #expect(throws: HypervisorError.self) { _ = try right.bindInterdomain(remote: .dom0, remotePort: a.port) }
        try right.close(b.port)
        // Unbound again: a new binder gets through.
        let c = try right.bindInterdomain(remote: .dom0, remotePort: a.port)
        try a.notify()
        #expect(try c.wait(timeoutMilliseconds: 30_000))
        #expect(throws: HypervisorError.self) { try right.close(b.port) }
    }

    @Test func virqDomExcFiresOnShutdownAndDestroy() throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        let virq = try hypervisor.bindVirq(.domainException)
        let domain = try hypervisor.createDomain(try Self.spec("watched", "idle"))
        try hypervisor.unpause(domain.domid)
        #expect(try !virq.consumePending())
        try hypervisor.destroy(domain.domid)
        #expect(try virq.wait(timeoutMilliseconds: 30_000))
    }

    /// A guest process cannot map what it was not granted, map another domain's
    /// frame, bind a port not offered to it, touch a port it does not own, or use
    /// privileged operations; it can use its own resources.
    @Test func guestsAreIsolated() throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        let victim = try hypervisor.createDomain(try Self.spec("victim", "idle"))
        try hypervisor.unpause(victim.domid)
        let intruder = try hypervisor.createDomain(try Self.spec("intruder", "isolation", ["\(victim.domid.rawValue)"]))
        try hypervisor.unpause(intruder.domid)
        #expect(try host.eventually { host.guestOutput("intruder").contains("own_resources=") })
        let lines = host.guestOutput("intruder").split(separator: "\n").filter {
            $0.contains("=") && !$0.hasPrefix("domid")
        }
        let attempts = lines.filter { !$0.hasPrefix("own_resources") }
        #expect(attempts.count == 12, "every attempt reported: \(lines)")
        for line in attempts {
            #expect(line.contains("=refused "), "\(line)")
        }
        #expect(lines.contains("own_resources=ok"))
        #expect(host.guestOutput("intruder").contains("map_foreign_frame=refused permission denied"))
    }

    @Test func dmesgClears() throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        let domain = try hypervisor.createDomain(try Self.spec("talker", "idle"))
        try hypervisor.unpause(domain.domid)
        #expect(try host.eventually { !(try hypervisor.readConsole(clear: false)).isEmpty })
        let printed = try ConchExecutable.run(["dmesg", "-c", "--run-dir", host.runDirectory])
        #expect(printed.status == 0)
        #expect(printed.stdout == "(d1) hello from d1\n")
        #expect(try hypervisor.readConsole(clear: false).isEmpty)
    }
}

/// The in-process fake behaves like the real hypervisor on what the layers above use.
@Suite("FakeHypervisor")
struct FakeHypervisorTests {
    @Test func grantsPortsAndPrivilegeLikeTheRealOne() throws {
        let fake = FakeHypervisor()
        let dom0 = fake.privileged()
        let info = try dom0.createDomain(DomainSpec(name: "f", uuid: "u", program: "/bin/true"))
        let guest = fake.guest(info.domid)
        #expect(
            ConsoleRing(memory: try dom0.mapGrant(info.domid, ref: .console, readOnly: false)).connection
                == .disconnected
        )
        #expect(throws: HypervisorError.self) { _ = try guest.mapGrant(info.domid, ref: .console, readOnly: false) }
        #expect(throws: HypervisorError.self) { _ = try (guest as! any DomainControl).listDomains() }
        let backend = try dom0.bindInterdomain(remote: info.domid, remotePort: info.start.consolePort)
        let frontend = try guest.attach(info.start.consolePort)
        try frontend.notify()
        #expect(try backend.wait(timeoutMilliseconds: 10_000))
        try backend.notify()
        #expect(try frontend.wait(timeoutMilliseconds: 10_000))
        #expect(try guest.status(info.start.consolePort) == .interdomain(remote: .dom0, remotePort: backend.port))
        try guest.consoleWrite(Array("hi\n".utf8))
        #expect(fake.consoleText == "(d1) hi\n")
    }
}

/// The one place that chooses a hypervisor, at run time.
@Suite("HypervisorFactory")
struct HypervisorFactoryTests {
    let runDirectory = RunDirectory(path: "/nonexistent/conch-run")

    @Test func autoIsRealXenExactlyOnADom0() {
        let backend = HypervisorFactory.backend(.auto, runDirectory: runDirectory)
        if HypervisorFactory.hostIsXenDom0 {
            #expect(backend == .xen)
        } else {
            #expect(backend == .simulated(runDirectory))
        }
        #expect(HypervisorFactory.backend(.simulated, runDirectory: runDirectory) == .simulated(runDirectory))
        #expect(HypervisorFactory.backend(.xen, runDirectory: runDirectory) == .xen)
    }

    @Test(.enabled(if: !HypervisorFactory.hostIsXenDom0, "this host is a Xen dom0: the real-Xen rig covers it"))
    func realXenOffADom0SaysWhatIsMissing() throws {
        do {
            _ = try HypervisorFactory.privileged(.xen)
            Issue.record("opened Xen's devices on a host without Xen")
        } catch let error as HypervisorError {
            guard case .unavailable(let why) = error else {
                Issue.record("expected .unavailable, got \(error)")
                return
            }
            #expect(why.contains(HypervisorFactory.realXenBuiltIn ? "failed" : "libxen-dev"), "\(why)")
        }
    }
}
