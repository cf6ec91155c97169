//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Testing
import Toolstack
import XenABI
import XenHypervisor
import XenTestKit

/// No trap on guest- or config-sized data.
@Suite("hostile input: sizes and names")
struct InputBoundsTests {
    /// A `list` answer far larger than one packet (about 900 domains) arrives
    /// whole; the hypervisor keeps serving.
    @Test func listingManyDomainsDoesNotKillTheHypervisor() throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        let longName = String(repeating: "n", count: NameRules.maximumLength - 4)
        for index in 0..<900 {
            _ = try hypervisor.createDomain(
                DomainSpec(name: "\(longName)\(index)", uuid: "u\(index)", program: "/bin/true", pageCount: 4)
            )
        }
        let domains = try hypervisor.listDomains()
        #expect(domains.count == 900)
        #expect(Set(domains.map(\.name)).count == 900)
        // Still alive and answering.
        #expect(try hypervisor.listDomains().count == 900)
    }

    /// Names that would walk a path, move a cursor or reverse text are refused, by
    /// the toolstack with a message and by the hypervisor as a second line.
    @Test(arguments: [
        String(repeating: "x", count: 4000), "a\u{1B}[2Jb", "evil\u{202E}gpj.exe", "tab\there", "../up", "a/b", "",
        "del\u{7F}", "c1\u{85}",
    ])
    func badNamesAreRefused(_ name: String) throws {
        #expect(NameRules.problem(with: name, what: "domain name") != nil)
        let configuration = DomainConfiguration(name: name, kernel: "/bin/true")
        #expect(throws: DomainValidationError.self) { try configuration.validate() }
        var channel = DomainConfiguration(name: "ok", kernel: "/bin/true")
        channel.channels = [ChannelConfiguration(name: name, connection: .pty, devid: 1)]
        #expect(throws: DomainValidationError.self) { try channel.validate() }
    }

    @Test func badNamesAreRefusedByTheHypervisorToo() throws {
        let host = try HostStack()
        defer { host.stop() }
        let hypervisor = try host.privilegedHypervisor()
        for name in [String(repeating: "x", count: 4000), "bidi\u{2066}", "a/b"] {
            #expect(throws: HypervisorError.self) {
                try hypervisor.createDomain(DomainSpec(name: name, uuid: "u", program: "/bin/true"))
            }
        }
        #expect(try hypervisor.listDomains().isEmpty)
    }

    @Test func acceptableNames() {
        for name in ["web-1", "db.example.org", "日本語", "x", String(repeating: "y", count: NameRules.maximumLength)] {
            #expect(NameRules.problem(with: name, what: "domain name") == nil, "\(name)")
        }
    }

    /// Backend paths are parsed strictly: anything but the exact shape is not one.
    @Test func backendPathsAreParsedStrictly() {
        #expect(ConsoleLayout.parseBackend("/local/domain/0/backend/console/5/1")! == (DomID(0), DomID(5), 1))
        for path in [
            "/local/domain/0/backend/console/5", "/local/domain/0/backend/vif/5/1",
            "/local/domain/00/backend/console/5/1",
            "/local/domain/0/backend/console/5/1/x", "local/domain/0/backend/console/5/1",
            "/local/domain/99999/backend/console/5/1", "/local/domain/0/backend/console/-5/1",
            "/local/domain//backend/console/5/1",
        ] {
            #expect(ConsoleLayout.parseBackend(path) == nil, "\(path)")
        }
    }
}
