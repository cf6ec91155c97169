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
import ToolstackRuntime
import XenABI
import XenHypervisor
import XenRing
import XenSim
import XenTestKit
import XenstoreClient

/// The domain builder against a real hypervisor and xenstored.
@Suite("Domain builder")
struct DomainBuilderTests {
    static func configuration(_ text: String) throws -> DomainConfiguration {
        try DomainConfiguration.parse(text, fileName: "test.cfg").configuration
    }

    static func twoChannelConfig(name: String = "builder") throws -> DomainConfiguration {
        try configuration(
            """
            name = "\(name)"
            kernel = "\(try ConchExecutable.testGuestPath())"
            extra = "idle"
            memory = 128
            channel = [ "name=org.conch.agent.0, connection=pty",
                        "name=org.conch.provision.0, connection=socket, path=/tmp/conch-provision.sock" ]
            """
        )
    }

    /// Every node and permission the plan says libxl writes for a domain with two
    /// channels is in xenstore, exactly (the plan itself is checked against §5.1
    /// node by node in ToolstackTests).
    @Test func twoChannelDomainHasEveryNodeAndPermission() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let builder = DomainBuilder(hypervisor: try host.privilegedHypervisor(), store: store)
        let built = try await builder.build(try Self.twoChannelConfig())
        let d = built.domain.domid.rawValue
        #expect(built.domain.state == .paused)
        let expected = built.plan.simulatedStore()
        #expect(expected.count > 40, "the plan describes the whole layout")
        for (path, node) in expected.sorted(by: { $0.key < $1.key }) {
            let value = try? await store.readString(path)
            #expect(value == node.value, "\(path)")
            let permissions = try? await store.permissions(path)
            #expect(permissions == node.permissions, "\(path)")
        }
        // Spot checks against §5.1 and our documented deviation.
        #expect(try await store.readString("/local/domain/\(d)/console/type") == "xenconsoled")
        #expect(
            try await store.readString("/local/domain/\(d)/console/ring-ref")
                == "\(built.domain.start.consoleFrame.rawValue)"
        )
        #expect(
            try await store.readString("/local/domain/\(d)/console/port")
                == "\(built.domain.start.consolePort.rawValue)"
        )
        #expect(try await store.readString("/local/domain/\(d)/device/console/1/name") == "org.conch.agent.0")
        #expect(try await store.readString("/local/domain/\(d)/device/console/2/type") == "xenconsoled")
        #expect(try await store.readString("/local/domain/\(d)/device/console/2/output") == "chardev:libxl-channel2")
        #expect(try await store.readString("/local/domain/0/backend/console/\(d)/2/connection") == "socket")
        #expect(
            try await store.readString("/local/domain/0/backend/console/\(d)/2/path") == "/tmp/conch-provision.sock"
        )
        #expect(try await store.permissions("/local/domain/\(d)/device/console/1").description == "n\(d),r0")
        #expect(try await store.permissions("/local/domain/\(d)/console").description == "n0,r\(d)")
        #expect(try await store.readString("/local/domain/\(d)/name") == "builder")
        #expect(try await store.isDomainIntroduced(built.domain.domid))
        // The console page starts DISCONNECTED, as Xen 4.21's builder leaves it.
        let page = try host.privilegedHypervisor().mapGrant(built.domain.domid, ref: .console, readOnly: true)
        #expect(ConsoleRing(memory: page).connection == .disconnected)

        try await builder.destroy(built.domain.domid)
        #expect(try await !store.exists("/local/domain/\(d)"))
        #expect(try await !store.exists("/libxl/\(d)"))
        #expect(try await !store.exists("/local/domain/0/backend/console/\(d)"))
        #expect(try host.privilegedHypervisor().listDomains().isEmpty)
    }

    @Test func legacyBuilderLeavesTheConsolePageZeroed() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let builder = DomainBuilder(hypervisor: try host.privilegedHypervisor(), store: store)
        let built = try await builder.build(try Self.twoChannelConfig(), legacyConsolePage: true)
        let page = try host.privilegedHypervisor().mapGrant(built.domain.domid, ref: .console, readOnly: true)
        #expect(page.load8(at: ConsoleInterface.connectionOffset, ordering: .acquiring) == 0)
    }

    /// libxl's validation messages, and nothing left behind.
    @Test(arguments: [
        ("channel = [ \"connection=pty\" ]", "channel 1 has no name"),
        (
            "channel = [ \"name=a.b, connection=pty\", \"name=c.d, connection=socket, path=/x\", \"connection=pty\" ]",
            "channel 3 has no name"
        ),
    ])
    func invalidChannelsLeaveNothingBuilt(channelLine: String, message: String) async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let builder = DomainBuilder(hypervisor: try host.privilegedHypervisor(), store: store)
        let config = try Self.configuration(
            "name = \"bad\"\nkernel = \"\(try ConchExecutable.path())\"\n\(channelLine)\n"
        )
        await #expect {
            _ = try await builder.build(config)
        } throws: { error in
            "\(error)".contains(message)
        }
        #expect(try host.privilegedHypervisor().listDomains().isEmpty)
        #expect(try await store.directory("/local/domain").isEmpty)
        #expect(try await !store.exists("/libxl"))
    }

    @Test func aKernelThatIsNotAProgramIsRefused() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let builder = DomainBuilder(hypervisor: try host.privilegedHypervisor(), store: store)
        let config = try Self.configuration("name = \"vm\"\nkernel = \"/boot/vmlinuz-nonexistent\"\n")
        await #expect {
            _ = try await builder.build(config)
        } throws: { error in
            "\(error)".contains("Conch runs a host program")
        }
        #expect(try host.privilegedHypervisor().listDomains().isEmpty)
    }
}
