//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import Toolstack
import XenABI
import XenstoreWire

/// Domain 5 with one pty channel served by dom0 and one socket channel served
/// by domain 3 (named "driver"), console 0 served by dom0.
let twoChannelConfig = """
    name = "agent-vm"
    uuid = "6b1f8a36-0c1d-4e2f-9a3b-4c5d6e7f8091"
    kernel = "/usr/bin/agent"
    memory = 64
    vcpus = 2
    maxvcpus = 3
    channel = [
        "name=org.example.agent.0, connection=pty",
        "name=org.example.cfg.1, connection=socket, path=/run/conch/cfg.sock, backend=driver",
    ]
    """

let twoChannelContext = PlanContext(
    domid: DomID(5),
    consoleBackend: .dom0,
    xenstoreDomain: .dom0,
    consoleRingFrame: PageFrame(123_456),
    consolePort: EvtchnPort(17),
    storeRingFrame: PageFrame(123_457),
    storePort: EvtchnPort(18),
    resolveDomainName: { $0 == "driver" ? DomID(3) : nil }
)

@Suite("DomainPlan")
struct DomainPlanTests {
    func twoChannelPlan() throws -> DomainPlan {
        let configuration = try parsed(twoChannelConfig).configuration
        return try DomainPlan.make(for: configuration, context: twoChannelContext)
    }

    /// Every console node, value and permission, written out by hand from
    /// reference §5.1: FE-perms = n<guest> r<backend>, RO-perms = n<backend> r<guest>.
    static let expectedConsoleNodes: [(path: String, value: String, perms: String)] = [
        // Console 0: frontend directory RO-perms (n0 r5).
        ("/local/domain/5/console", "", "n0 r5"),
        ("/local/domain/5/console/backend", "/local/domain/0/backend/console/5/0", "n0 r5"),
        ("/local/domain/5/console/backend-id", "0", "n5 r0"),
        ("/local/domain/5/console/limit", "1048576", "n0 r5"),
        ("/local/domain/5/console/type", "xenconsoled", "n0 r5"),
        ("/local/domain/5/console/output", "pty", "n0 r5"),
        ("/local/domain/5/console/tty", "", "n0 r5"),
        ("/local/domain/5/console/port", "17", "n0 r5"),
        ("/local/domain/5/console/ring-ref", "123456", "n0 r5"),
        ("/local/domain/0/backend/console/5/0", "", "n0 r5"),
        ("/local/domain/0/backend/console/5/0/frontend", "/local/domain/5/console", "n0 r5"),
        ("/local/domain/0/backend/console/5/0/frontend-id", "5", "n0 r5"),
        ("/local/domain/0/backend/console/5/0/online", "1", "n0 r5"),
        ("/local/domain/0/backend/console/5/0/state", "1", "n0 r5"),
        ("/local/domain/0/backend/console/5/0/protocol", "vt100", "n0 r5"),
        ("/libxl/5/device/console/0", "", "n0"),
        ("/libxl/5/device/console/0/frontend", "/local/domain/5/console", "n0"),
        ("/libxl/5/device/console/0/backend", "/local/domain/0/backend/console/5/0", "n0"),
        ("/libxl/5/device/console/0/frontend-id", "5", "n0"),
        ("/libxl/5/device/console/0/online", "1", "n0"),
        ("/libxl/5/device/console/0/state", "1", "n0"),
        ("/libxl/5/device/console/0/protocol", "vt100", "n0"),

        // Channel devid 1, pty, backend dom0: frontend directory FE-perms (n5 r0).
        ("/local/domain/5/device/console/1", "", "n5 r0"),
        ("/local/domain/5/device/console/1/backend", "/local/domain/0/backend/console/5/1", "n5 r0"),
        ("/local/domain/5/device/console/1/backend-id", "0", "n5 r0"),
        ("/local/domain/5/device/console/1/state", "1", "n5 r0"),
        ("/local/domain/5/device/console/1/protocol", "vt100", "n5 r0"),
        ("/local/domain/5/device/console/1/name", "org.example.agent.0", "n0 r5"),
        ("/local/domain/5/device/console/1/limit", "1048576", "n0 r5"),
        ("/local/domain/5/device/console/1/type", "xenconsoled", "n0 r5"),
        ("/local/domain/5/device/console/1/output", "pty", "n0 r5"),
        ("/local/domain/5/device/console/1/tty", "", "n0 r5"),
        ("/local/domain/0/backend/console/5/1", "", "n0 r5"),
        ("/local/domain/0/backend/console/5/1/frontend", "/local/domain/5/device/console/1", "n0 r5"),
        ("/local/domain/0/backend/console/5/1/frontend-id", "5", "n0 r5"),
        ("/local/domain/0/backend/console/5/1/online", "1", "n0 r5"),
        ("/local/domain/0/backend/console/5/1/state", "1", "n0 r5"),
        ("/local/domain/0/backend/console/5/1/protocol", "vt100", "n0 r5"),
        ("/local/domain/0/backend/console/5/1/name", "org.example.agent.0", "n0 r5"),
        ("/local/domain/0/backend/console/5/1/connection", "pty", "n0 r5"),
        ("/libxl/5/device/console/1", "", "n0"),
        ("/libxl/5/device/console/1/frontend", "/local/domain/5/device/console/1", "n0"),
        ("/libxl/5/device/console/1/backend", "/local/domain/0/backend/console/5/1", "n0"),
        ("/libxl/5/device/console/1/frontend-id", "5", "n0"),
        ("/libxl/5/device/console/1/online", "1", "n0"),
        ("/libxl/5/device/console/1/state", "1", "n0"),
        ("/libxl/5/device/console/1/protocol", "vt100", "n0"),
        ("/libxl/5/device/console/1/name", "org.example.agent.0", "n0"),
        ("/libxl/5/device/console/1/connection", "pty", "n0"),

        // Channel devid 2, socket, backend domain 3: FE-perms n5 r3, RO-perms n3 r5.
        ("/local/domain/5/device/console/2", "", "n5 r3"),
        ("/local/domain/5/device/console/2/backend", "/local/domain/3/backend/console/5/2", "n5 r3"),
        ("/local/domain/5/device/console/2/backend-id", "3", "n5 r3"),
        ("/local/domain/5/device/console/2/state", "1", "n5 r3"),
        ("/local/domain/5/device/console/2/protocol", "vt100", "n5 r3"),
        ("/local/domain/5/device/console/2/name", "org.example.cfg.1", "n3 r5"),
        ("/local/domain/5/device/console/2/limit", "1048576", "n3 r5"),
        ("/local/domain/5/device/console/2/type", "xenconsoled", "n3 r5"),
        ("/local/domain/5/device/console/2/output", "chardev:libxl-channel2", "n3 r5"),
        ("/local/domain/5/device/console/2/tty", "", "n3 r5"),
        ("/local/domain/3/backend/console/5/2", "", "n3 r5"),
        ("/local/domain/3/backend/console/5/2/frontend", "/local/domain/5/device/console/2", "n3 r5"),
        ("/local/domain/3/backend/console/5/2/frontend-id", "5", "n3 r5"),
        ("/local/domain/3/backend/console/5/2/online", "1", "n3 r5"),
        ("/local/domain/3/backend/console/5/2/state", "1", "n3 r5"),
        ("/local/domain/3/backend/console/5/2/protocol", "vt100", "n3 r5"),
        ("/local/domain/3/backend/console/5/2/name", "org.example.cfg.1", "n3 r5"),
        ("/local/domain/3/backend/console/5/2/connection", "socket", "n3 r5"),
        ("/local/domain/3/backend/console/5/2/path", "/run/conch/cfg.sock", "n3 r5"),
        ("/libxl/5/device/console/2", "", "n0"),
        ("/libxl/5/device/console/2/frontend", "/local/domain/5/device/console/2", "n0"),
        ("/libxl/5/device/console/2/backend", "/local/domain/3/backend/console/5/2", "n0"),
        ("/libxl/5/device/console/2/frontend-id", "5", "n0"),
        ("/libxl/5/device/console/2/online", "1", "n0"),
        ("/libxl/5/device/console/2/state", "1", "n0"),
        ("/libxl/5/device/console/2/protocol", "vt100", "n0"),
        ("/libxl/5/device/console/2/name", "org.example.cfg.1", "n0"),
        ("/libxl/5/device/console/2/connection", "socket", "n0"),
        ("/libxl/5/device/console/2/path", "/run/conch/cfg.sock", "n0"),
    ]

    @Test func consoleNodesMatchReferenceTableExactly() throws {
        let store = try twoChannelPlan().simulatedStore()
        for expected in Self.expectedConsoleNodes {
            let node = store[expected.path]
            #expect(node?.value == expected.value, "value of \(expected.path)")
            #expect(node?.permissions.spaced == expected.perms, "permissions of \(expected.path)")
        }
        // No node beyond the table under any device directory.
        let deviceRoots = [
            "/local/domain/5/console", "/local/domain/5/device/console/",
            "/local/domain/0/backend/console/5/", "/local/domain/3/backend/console/5/",
            "/libxl/5/device/console/",
        ]
        let written = Set(store.keys.filter { key in deviceRoots.contains { key.hasPrefix($0) } })
        #expect(written == Set(Self.expectedConsoleNodes.map(\.path)))
    }

    @Test func domainHomeNodesAndPermissions() throws {
        let store = try twoChannelPlan().simulatedStore()
        let expected: [(String, String, String)] = [
            ("/local/domain/5", "", "n0 r5"),
            ("/local/domain/5/vm", "/vm/6b1f8a36-0c1d-4e2f-9a3b-4c5d6e7f8091", "n0 r5"),
            ("/local/domain/5/name", "agent-vm", "n0 r5"),
            ("/local/domain/5/domid", "5", "n0 r5"),
            ("/local/domain/5/cpu", "", "n0 r5"),
            ("/local/domain/5/cpu/0/availability", "online", "n0 r5"),
            ("/local/domain/5/cpu/1/availability", "online", "n0 r5"),
            ("/local/domain/5/cpu/2/availability", "offline", "n0 r5"),
            ("/local/domain/5/memory/static-max", "65536", "n0 r5"),
            ("/local/domain/5/memory/target", "65536", "n0 r5"),
            ("/local/domain/5/memory/videoram", "0", "n0 r5"),
            ("/local/domain/5/store/port", "18", "n0 r5"),
            ("/local/domain/5/store/ring-ref", "123457", "n0 r5"),
            ("/local/domain/5/device", "", "n0 r5"),
            ("/local/domain/5/control", "", "n0 r5"),
            ("/local/domain/5/control/shutdown", "", "n5"),
            ("/local/domain/5/control/feature-poweroff", "", "n5"),
            ("/local/domain/5/control/feature-reboot", "", "n5"),
            ("/local/domain/5/control/feature-suspend", "", "n5"),
            ("/local/domain/5/control/sysrq", "", "n5"),
            ("/local/domain/5/control/platform-feature-multiprocessor-suspend", "1", "n0 r5"),
            ("/local/domain/5/control/platform-feature-xs_reset_watches", "1", "n0 r5"),
            ("/local/domain/5/device/suspend/event-channel", "", "n5"),
            ("/local/domain/5/data", "", "n5"),
            ("/local/domain/5/drivers", "", "n5"),
            ("/local/domain/5/feature", "", "n5"),
            ("/local/domain/5/attr", "", "n5"),
            ("/local/domain/5/error", "", "n5"),
            ("/vm/6b1f8a36-0c1d-4e2f-9a3b-4c5d6e7f8091", "", "n0 r5"),
            ("/vm/6b1f8a36-0c1d-4e2f-9a3b-4c5d6e7f8091/uuid", "6b1f8a36-0c1d-4e2f-9a3b-4c5d6e7f8091", "n0 r5"),
            ("/vm/6b1f8a36-0c1d-4e2f-9a3b-4c5d6e7f8091/name", "agent-vm", "n0 r5"),
            ("/libxl/5", "", "n0"),
            ("/libxl/5/type", "pv", "n0"),
        ]
        for (path, value, perms) in expected {
            #expect(store[path]?.value == value, "value of \(path)")
            #expect(store[path]?.permissions.spaced == perms, "permissions of \(path)")
        }
        #expect(store["/local/domain/5/hvmloader"] == nil)
        #expect(store["/local/domain/5/control/feature-s3"] == nil)
    }

    @Test func stepOrderFollowsLibxl() throws {
        let plan = try twoChannelPlan()
        let steps = plan.steps
        #expect(steps.first == .remove(path: "/local/domain/5"))
        let introduce = try #require(
            steps.firstIndex {
                if case .introduce = $0 { true } else { false }
            }
        )
        #expect(
            steps[introduce] == .introduce(domain: DomID(5), storeFrame: PageFrame(123_457), storePort: EvtchnPort(18))
        )
        func index(_ path: String) -> Int? { steps.firstIndex { $0.path == path } }
        // Home and build nodes before the introduction; channels before console 0 (libxl's order).
        #expect(try #require(index("/local/domain/5/cpu/2/availability")) < introduce)
        #expect(introduce < (index("/local/domain/5/device/console/1") ?? 0))
        #expect(try #require(index("/local/domain/5/device/console/2")) < (index("/local/domain/5/console") ?? 0))
        // Within a device: private copy, frontend, backend, then the copy's entries.
        #expect(
            try #require(index("/libxl/5/device/console/1/frontend"))
                < (index("/local/domain/5/device/console/1") ?? 0)
        )
        #expect(
            try #require(index("/local/domain/0/backend/console/5/1/frontend"))
                < (index("/libxl/5/device/console/1/frontend-id") ?? 0)
        )
        // The RO entries carry explicit permissions; the links inherit.
        #expect(
            steps.contains(
                .write(
                    path: "/local/domain/5/device/console/1/backend",
                    value: "/local/domain/0/backend/console/5/1",
                    permissions: nil
                )
            )
        )
        #expect(
            steps.contains(
                .mkdir(
                    path: "/local/domain/5/device/console/1",
                    permissions: XenstorePermissions(owner: DomID(5), acl: [.init(.read, .dom0)])
                )
            )
        )
    }

    @Test func plannedConsolesSummary() throws {
        let plan = try twoChannelPlan()
        #expect(plan.consoles.map(\.devid) == [0, 1, 2])
        #expect(plan.consoles.map(\.backend) == [0, 0, 3])
        #expect(plan.consoles.map(\.name) == [nil, "org.example.agent.0", "org.example.cfg.1"])
        #expect(plan.xenstoreDomain == 0)
    }

    @Test func teardownPaths() throws {
        #expect(
            try twoChannelPlan().teardownPaths == [
                "/local/domain/0/backend/console/5/0",
                "/local/domain/0/backend/console/5/1",
                "/local/domain/3/backend/console/5/2",
                "/local/domain/0/backend/console/5",
                "/local/domain/3/backend/console/5",
                "/local/domain/5",
                "/vm/6b1f8a36-0c1d-4e2f-9a3b-4c5d6e7f8091",
                "/libxl/5",
            ]
        )
    }

    @Test func withoutStoreDetailsNoIntroduce() throws {
        let c = DomainConfiguration(name: "g", uuid: "00000000-0000-0000-0000-000000000001", kernel: "/bin/true")
        let plan = try DomainPlan.make(
            for: c,
            context: PlanContext(domid: DomID(2), consoleRingFrame: PageFrame(9), consolePort: EvtchnPort(3))
        )
        #expect(!plan.steps.contains { if case .introduce = $0 { true } else { false } })
        #expect(plan.simulatedStore()["/local/domain/2/store/port"] == nil)
        #expect(plan.consoles.count == 1)
    }

    @Test func hvmGetsHvmNodesAndTargetFudge() throws {
        let c = DomainConfiguration(
            name: "h",
            uuid: "00000000-0000-0000-0000-000000000001",
            type: .hvm,
            memory: 64,
            maxMemory: 128,
            kernel: "/bin/true"
        )
        let store = try DomainPlan.make(
            for: c,
            context: PlanContext(domid: DomID(2), consoleRingFrame: PageFrame(9), consolePort: EvtchnPort(3))
        ).simulatedStore()
        #expect(store["/local/domain/2/hvmloader"]?.permissions.spaced == "n0 r2")
        #expect(store["/local/domain/2/control/feature-s3"]?.permissions.spaced == "n2")
        #expect(store["/local/domain/2/memory/target"]?.value == "64512")
        #expect(store["/local/domain/2/memory/static-max"]?.value == "131072")
        #expect(store["/libxl/2/type"]?.value == "hvm")
    }

    @Test func uuidComesFromContextWhenConfigHasNone() throws {
        let c = DomainConfiguration(name: "g", kernel: "/bin/true")
        let context = PlanContext(
            domid: DomID(4),
            uuid: "ABCDEF01-2345-6789-ABCD-EF0123456789",
            consoleRingFrame: PageFrame(1),
            consolePort: EvtchnPort(1)
        )
        #expect(try DomainPlan.make(for: c, context: context).uuid == "abcdef01-2345-6789-abcd-ef0123456789")
    }

    @Test(arguments: [
        ("connection=pty", "channel 1 has no name"),
        (
            "name=a,connection=pty,backend=nosuch",
            "channel 1 backend domain 'nosuch' does not exist: give a running domain's name or id"
        ),
        ("name=a,connection=pty,backend=70000", "channel 1 backend domain id 70000 is not a valid domain id"),
        ("name=a,connection=pty,backend=32752", "channel 1 backend domain id 32752 is not a valid domain id"),
    ])
    func planErrorsProduceNoPlan(spec: String, message: String) throws {
        let c = try parsed(config("uuid = '00000000-0000-0000-0000-000000000001'\nchannel = [ '\(spec)' ]"))
            .configuration
        #expect(throws: DomainValidationError(message)) {
            try DomainPlan.make(for: c, context: twoChannelContext)
        }
    }

    @Test func numericAndDomain0BackendsResolveWithoutTheClosure() throws {
        let c = try parsed(
            config(
                """
                uuid = '00000000-0000-0000-0000-000000000001'
                channel = [ 'name=a,connection=pty,backend=7', 'name=b,connection=pty,backend=Domain-0' ]
                """
            )
        ).configuration
        let plan = try DomainPlan.make(
            for: c,
            context: PlanContext(domid: DomID(9), consoleRingFrame: PageFrame(1), consolePort: EvtchnPort(2))
        )
        #expect(plan.consoles.map(\.backend) == [0, 7, 0])
    }

    @Test func contextErrors() throws {
        let c = DomainConfiguration(name: "g", kernel: "/bin/true")
        #expect(
            throws: DomainValidationError("the domain has no uuid: the caller must generate one (PlanContext.uuid)")
        ) {
            try DomainPlan.make(
                for: c,
                context: PlanContext(
                    domid: DomID(3),
                    consoleRingFrame: PageFrame(1),
                    consolePort: EvtchnPort(1)
                )
            )
        }
        #expect(throws: DomainValidationError.self) {
            try DomainPlan.make(
                for: c,
                context: PlanContext(
                    domid: .dom0,
                    uuid: "00000000-0000-0000-0000-000000000001",
                    consoleRingFrame: PageFrame(1),
                    consolePort: EvtchnPort(1)
                )
            )
        }
    }

    @Test func deviationsTableNamesChannelType() {
        let type = DomainPlan.deviations.first { $0.path == "/local/domain/<d>/device/console/<devid>/type" }
        #expect(type?.libxl == "ioemu")
        #expect(type?.conch == "xenconsoled")
        #expect(type?.kind == .value)
        #expect(DomainPlan.deviations.allSatisfy { !$0.reason.isEmpty })
    }
}
