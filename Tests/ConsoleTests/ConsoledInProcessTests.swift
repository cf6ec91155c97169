//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleBackend
import ConsoleCore
import Foundation
import GuestFrontend
import Logging
import NIOPosix
import SystemExtras
import Testing
import Toolstack
import ToolstackRuntime
import XenABI
import XenHypervisor
import XenMemory
import XenRing
import XenTestKit
import XenstoreClient

/// consoled's xenbus backend and pump in one process, against ``FakeHypervisor``
/// and an in-process xenstored: no daemons, no sockets between them. The domain is
/// built by the real `DomainBuilder`; the guest's side is the real
/// `ChannelFrontend` over the guest's own xenstore ring.
@Suite("consoled in-process (FakeHypervisor, in-memory xenstore)")
struct ConsoledInProcessTests {
    final class Stack {
        let fake = FakeHypervisor()
        let dom0: any PrivilegedHypervisor
        let xenstored: InProcessXenstored
        let store: XenstoreClient
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let consoled: ConsoleDaemon
        let directory: ScratchDirectory

        init() async throws {
            dom0 = fake.privileged()
            xenstored = try await InProcessXenstored(hypervisor: dom0)
            store = try await xenstored.connectDom0()
            directory = try ScratchDirectory(prefix: "conch-inproc")
            consoled = ConsoleDaemon(
                configuration: .init(logDirectory: directory.path + "/logs"),
                hypervisor: dom0,
                store: store,
                eventLoop: group.next(),
                logger: Logger(label: "test.consoled")
            )
            try await consoled.start()
        }

        func build(_ text: String) async throws -> DomainInfo {
            let configuration = try DomainConfiguration.parse(text, fileName: "inproc.cfg").configuration
            return try await DomainBuilder(hypervisor: dom0, store: store).build(configuration).domain
        }

        func read(_ path: String) async -> String? { try? await store.readString(path) }

        /// Whether the node at `path` comes to hold `state` within 10 s.
        func reaches(_ path: String, _ state: XenbusState) async -> Bool {
            await eventuallyAsync(seconds: 10) { await read(path) == "\(state.rawValue)" }
        }

        func stop() async throws {
            await consoled.stop()
            store.close()
            try await xenstored.stop()
            try await group.shutdownGracefully()
            directory.remove()
        }
    }

    /// Reads from `descriptor` until what arrived contains `expected` (or 10 s pass).
    static func read(_ descriptor: Int32, until expected: String) -> String {
        var received = [UInt8]()
        let deadline = ContinuousClock.now + .seconds(10)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline, !String(decoding: received, as: UTF8.self).contains(expected) {
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) > 0 else { continue }
            let count = Glibc.read(descriptor, &buffer, buffer.count)
            if count > 0 { received += buffer.prefix(count) }
        }
        return String(decoding: received, as: UTF8.self)
    }

    static func open(_ path: String) throws -> Int32 {
        let descriptor = Glibc.open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        try #require(descriptor >= 0, "cannot open \(path): errno \(errno)")
        return descriptor
    }

    @Test func consoleZeroIsMarkedConnectedAndPumpedToItsLog() async throws {
        let stack = try await Stack()
        let domain = try await stack.build(#"name = "zero"\#nkernel = "/bin/true""#)
        let guest = stack.fake.guest(domain.domid)
        let ring = ConsoleRing(memory: try guest.mapOwnFrame(domain.start.consoleFrame))
        #expect(ring.connection == .disconnected, "the builder hands over a DISCONNECTED page")

        #expect(await eventuallyAsync(seconds: 10) { ring.connection == .connected }, "consoled never connected")
        let line = "boot line from d\(domain.domid.rawValue)\r\n"
        _ = try ring.frontend.output.write(Array(line.utf8))
        try guest.attach(domain.start.consolePort).notify()
        let log = "\(stack.directory.path)/logs/guest-zero.log"
        #expect(
            await eventuallyAsync(seconds: 10) {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("boot line from")
            },
            "console 0's output never reached \(log)"
        )
        // The consumer index moves once the bytes are delivered, which may be just after
        // the log shows them.
        #expect(
            await eventuallyAsync(seconds: 10) {
                (try? ring.frontend.output.freeSpace()) == ConsoleInterface.outSize
            },
            "consoled consumed what it logged"
        )
        try await stack.stop()
    }

    @Test func aPtyChannelWalksTheHandshakeAndCarriesBytesBothWays() async throws {
        let stack = try await Stack()
        let domain = try await stack.build(
            """
            name = "chan"
            kernel = "/bin/true"
            channel = [ "name=org.conch.test.0, connection=pty" ]
            """
        )
        let d = domain.domid.rawValue
        let frontend = "/local/domain/\(d)/device/console/1"
        let backend = "/local/domain/0/backend/console/\(d)/1"
        let key = ConsoleKey(domid: domain.domid, devid: 1)

        // Before the guest runs: the sink is published and the backend waits.
        #expect(await stack.reaches(backend + "/state", .initWait), "the backend never reached InitWait")
        let hostTTY = try #require(await stack.read(frontend + "/tty"), "no tty published before the guest ran")
        #expect(
            await !stack.consoled.servedConsoles.contains(key),
            "nothing is mapped before the frontend offers a ring"
        )

        // The guest offers its ring over its own xenstore connection.
        let guest = stack.fake.guest(domain.domid)
        let guestStore = try await XenstoreClient.connectRing(hypervisor: guest)
        let channel = try await ChannelFrontend(
            devid: 1,
            domainPath: "/local/domain/\(d)",
            hypervisor: guest,
            store: guestStore,
            frame: domain.start.firstFreeFrame,
            grant: .firstUnreserved,
            grantTable: try guest.mapOwnFrame(domain.start.grantTableFrame)
        )
        #expect(await stack.reaches(backend + "/state", .connected), "the backend never connected")
        #expect(await stack.consoled.servedConsoles.contains(key))
        #expect(await stack.read(frontend + "/tty") == hostTTY, "the pty published early is the one served")
        #expect(channel.start())

        // Guest → host and host → guest, through the ring and consoled's pump.
        let host = try Self.open(hostTTY)
        defer { close(host) }
        let device = try Self.open(channel.devicePath)
        defer { close(device) }
        _ = "to-the-host".withCString { write(device, $0, 11) }
        #expect(Self.read(host, until: "to-the-host").contains("to-the-host"))
        _ = "to-the-guest".withCString { write(host, $0, 12) }
        #expect(Self.read(device, until: "to-the-guest").contains("to-the-guest"))

        // The guest closes: consoled stops serving and says Closed.
        try await guestStore.write(frontend + "/state", "\(XenbusState.closing.rawValue)")
        #expect(await stack.reaches(backend + "/state", .closed), "the backend never closed")
        #expect(await !stack.consoled.servedConsoles.contains(key))
        channel.stop()
        guestStore.close()
        try await stack.stop()
    }

    @Test func aBackendDirectoryNamingAnotherFrontendIsNotServed() async throws {
        let stack = try await Stack()
        let domain = try await stack.build(
            """
            name = "misnamed"
            kernel = "/bin/true"
            channel = [ "name=org.conch.test.0, connection=pty" ]
            """
        )
        let d = domain.domid.rawValue
        let backend = "/local/domain/0/backend/console/\(d)/1"
        #expect(await stack.reaches(backend + "/state", .initWait))
        // A second device whose backend names the first one's frontend.
        try await stack.store.write("/local/domain/0/backend/console/\(d)/2/frontend-id", "\(d)")
        try await stack.store.write(
            "/local/domain/0/backend/console/\(d)/2/frontend",
            "/local/domain/\(d)/device/console/1"
        )
        try await stack.store.write("/local/domain/0/backend/console/\(d)/2/state", "1")
        try await stack.store.write("/local/domain/\(d)/device/console/2/state", "1")
        // A third, well-formed device: once it waits, the same scan passed device 2.
        try await stack.store.write("/local/domain/0/backend/console/\(d)/3/frontend-id", "\(d)")
        try await stack.store.write(
            "/local/domain/0/backend/console/\(d)/3/frontend",
            "/local/domain/\(d)/device/console/3"
        )
        try await stack.store.write("/local/domain/0/backend/console/\(d)/3/state", "1")
        try await stack.store.write("/local/domain/\(d)/device/console/3/state", "1")
        #expect(await stack.reaches("/local/domain/0/backend/console/\(d)/3/state", .initWait))
        #expect(await stack.read("/local/domain/0/backend/console/\(d)/2/state") == "1")
        #expect(await stack.read("/local/domain/\(d)/device/console/2/tty") == nil)
        try await stack.stop()
    }
}
