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
import XenSim

/// Small guest programs for tests and benchmarks: the hypervisor runs
/// `conch test-guest <scenario>` as a domain's program. Each prints what it did as
/// `key=value` lines on stdout (the domain's stdio log).
struct TestGuest: ParsableCommand {
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
    }

    @Argument var scenario: Scenario
    @Argument var arguments: [String] = []

    func run() throws {
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
        }
        fflush(nil)
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
