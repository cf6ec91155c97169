//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import SystemExtras
import Testing
import Toolstack
import ToolstackRuntime
import XenABI
import XenHypervisor
import XenRing
import XenSim
import XenTestKit
import XenstoreClient

/// consoled and the guest kernel, end to end: real hypervisor, xenstored, consoled
/// and guest processes.
@Suite("consoled and the guest kernel")
struct ConsoledTests {
    static func build(
        _ host: HostStack,
        _ store: XenstoreClient,
        name: String,
        script: String,
        channels: [String] = [],
        frontend: FrontendMode = .flagAware,
        legacyConsolePage: Bool = false,
        hypervisorConsole: Bool = false
    ) async throws -> DomainBuilder.Built {
        let channelLines = channels.map { "\"\($0)\"" }.joined(separator: ", ")
        let config = try DomainConfiguration.parse(
            """
            name = "\(name)"
            kernel = "/bin/sh"
            channel = [ \(channelLines) ]
            """,
            fileName: "\(name).cfg"
        ).configuration
        var configured = config
        configured.arguments = ["-c", script]
        configured.hypervisorConsole = hypervisorConsole
        let builder = DomainBuilder(
            hypervisor: try host.privilegedHypervisor(),
            store: store
        )
        let kernel = [try ConchExecutable.path(), "guest-kernel", "--frontend", frontend.rawValue]
        return try await builder.build(configured, legacyConsolePage: legacyConsolePage, guestKernel: kernel)
    }

    static func connectSocket(_ path: String) throws -> FileHandle {
        FileHandle(fileDescriptor: try UnixSocketPath.connect(path), closeOnDealloc: true)
    }

    /// Connects to a socket channel once consoled's keeper serves it. The file
    /// appears at bind, a moment before the keeper listens, and a connection in
    /// that moment is refused: so this retries until it is let in (or gives up).
    static func connectWhenServed(_ path: String, host: HostStack) throws -> FileHandle {
        var connected: FileHandle?
        _ = host.eventually {
            connected = try? connectSocket(path)
            return connected != nil
        }
        guard let connected else { throw ConsoledTestFailure(description: "\(path) never accepted a client") }
        return connected
    }

    @Test func consoleZeroAndChannelsEndToEnd() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled()
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let socketPath = host.runDirectory + "/agent.sock"
        let built = try await Self.build(
            host,
            store,
            name: "e2e",
            script: """
                echo boot-from-program
                while [ ! -e "$CONCH_GUEST_DEV/xen-channel/org.conch.sock.0" ]; do sleep 0.05; done
                echo hello-over-socket > "$CONCH_GUEST_DEV/xen-channel/org.conch.sock.0"
                read line < "$CONCH_GUEST_DEV/xen-channel/org.conch.sock.0"
                echo "guest got: $line"
                sleep 600
                """,
            channels: [
                "name=org.conch.sock.0, connection=socket, path=\(socketPath)", "name=org.conch.pty.0, connection=pty",
            ]
        )
        let d = built.domain.domid
        let hypervisor = try host.privilegedHypervisor()
        try hypervisor.unpause(d)

        // The socket channel appears; the guest's line arrives; our reply reaches the guest.
        let client = try Self.connectWhenServed(socketPath, host: host)
        var received = Data()
        let gotHello = try host.eventually {
            received += client.availableData
            return String(decoding: received, as: UTF8.self).contains("hello-over-socket\n")
        }
        try #require(gotHello, "guest: \(host.guestOutput("e2e")) consoled: \(host.consoled?.log ?? "")")
        client.write(Data("pong\n".utf8))

        let log = host.logDirectory + "/guest-e2e.log"
        #expect(
            try host.eventually {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                return text.contains("guest got: pong")
            },
            "console log: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "none")"
        )
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.contains("boot-from-program"))
        #expect(text.contains("[    conch] Conch guest kernel: domain \(d.rawValue) (e2e)"))

        // pty nodes, flag CONNECTED, backend state 4 — the pty channel is set up on
        // its own, so on a loaded machine it may still be on its way.
        let nodes = [
            "/local/domain/\(d.rawValue)/console/tty", "/local/domain/\(d.rawValue)/device/console/2/tty",
            "/local/domain/0/backend/console/\(d.rawValue)/1/state",
            "/local/domain/\(d.rawValue)/device/console/1/state",
        ]
        let published = await host.eventuallyAsync {
            for node in nodes where (try? await store.readString(node)) == nil { return false }
            let backendState = try? await store.readString(nodes[2])
            let frontendState = try? await store.readString(nodes[3])
            return backendState == "4" && frontendState == "4"
        }
        var values: [String] = []
        for node in nodes { values.append("\(node)=\((try? await store.readString(node)) ?? "(none)")") }
        #expect(
            published,
            "consoled did not publish every node and state: \(values) consoled: \(host.consoled?.log ?? "")"
        )
        let tty = try await store.readString("/local/domain/\(d.rawValue)/console/tty")
        #expect(tty.hasPrefix("/dev/pts/"))
        #expect(try await store.readString("/local/domain/\(d.rawValue)/device/console/2/tty").hasPrefix("/dev/pts/"))
        #expect(try await store.readString("/local/domain/0/backend/console/\(d.rawValue)/1/state") == "4")
        #expect(try await store.readString("/local/domain/\(d.rawValue)/device/console/1/state") == "4")
        let page = try hypervisor.mapGrant(d, ref: .console, readOnly: true)
        #expect(ConsoleRing(memory: page).connection == .connected)

        // A second client is told the channel is busy.
        let second = try Self.connectSocket(socketPath)
        var busy = Data()
        #expect(
            try host.eventually {
                busy += second.availableData
                return String(decoding: busy, as: UTF8.self).contains("busy")
            }
        )

        // Orderly stop (a restart as much as a shutdown): the page stays CONNECTED
        // for the next consoled; the socket file goes with the keeper.
        host.stopConsoled()
        #expect(ConsoleRing(memory: page).connection == .connected)
        #expect(!FileManager.default.fileExists(atPath: socketPath))
    }
}

extension ConsoledTests {
    /// A channel of `type = "ioemu"` is QEMU's on a host where QEMU is the device
    /// model: consoled leaves it alone until Conch's device model hands the
    /// domain's ioemu consoles over, and then serves it like any other.
    @Test func anIoemuChannelWaitsForConchsDeviceModel() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let socketPath = host.runDirectory + "/ioemu.sock"
        let channel = "\"$CONCH_GUEST_DEV/xen-channel/org.conch.ioemu\""
        let built = try await Self.build(
            host,
            store,
            name: "ioemu",
            script: """
                while [ ! -e \(channel) ]; do sleep 0.05; done
                echo served-by-consoled > \(channel)
                sleep 600
                """,
            channels: ["name=org.conch.ioemu, connection=socket, path=\(socketPath)"]
        )
        let d = built.domain.domid
        // What libxl writes for a channel when a device model serves it.
        try await store.write("/local/domain/\(d.rawValue)/device/console/1/type", "ioemu")
        try host.startConsoled()
        try host.privilegedHypervisor().unpause(d)
        // consoled has taken the domain in: console 0 is served...
        #expect(
            try await host.eventuallyAsync {
                (try? await store.readString("/local/domain/\(d.rawValue)/console/tty"))?.hasPrefix("/dev/pts/") == true
            }
        )
        // ...and the ioemu channel is not, however long we give it.
        try await Task.sleep(for: .seconds(1))
        #expect(!FileManager.default.fileExists(atPath: socketPath), "consoled served an ioemu channel unasked")
        #expect(try await store.readString("/local/domain/0/backend/console/\(d.rawValue)/1/state") != "4")

        // Conch's device model hands the domain's ioemu consoles over.
        try await store.write(ConsoleLayout.consoleHandoff(of: d, backend: .dom0), "consoled")
        let client = try Self.connectWhenServed(socketPath, host: host)
        var received = Data()
        #expect(
            try host.eventually {
                received += client.availableData
                return String(decoding: received, as: UTF8.self).contains("served-by-consoled")
            },
            "guest: \(host.guestOutput("ioemu")) consoled: \(host.consoled?.log ?? "")"
        )
    }
}

/// Untrusted rings: one guest's invalid indices quarantine its console only.
@Suite("consoled quarantine and stats")
struct ConsoledQuarantineTests {
    @Test func invalidIndicesQuarantineOnlyThatConsole() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled()
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let hypervisor = try host.privilegedHypervisor()
        let builder = DomainBuilder(hypervisor: hypervisor, store: store)
        var evil = try DomainConfiguration.parse("name = \"evil\"\nkernel = \"/bin/true\"\n", fileName: "evil.cfg")
            .configuration
        evil.kernel = try ConchExecutable.testGuestPath()
        evil.arguments = ["corrupt-console"]
        let bad = try await builder.build(evil)
        try hypervisor.unpause(bad.domain.domid)
        let good = try await ConsoledTests.build(host, store, name: "good", script: "echo still-served; sleep 600")
        try hypervisor.unpause(good.domain.domid)

        #expect(
            try host.eventually {
                (try? String(contentsOfFile: host.logDirectory + "/guest-good.log", encoding: .utf8))?.contains(
                    "still-served"
                ) ?? false
            }
        )
        #expect(try host.eventually { host.guestOutput("evil").contains("corrupted=console") })
        var quarantined: String?
        _ = try host.eventually {
            let stats = try ConchExecutable.run(["stats", "--json", "--run-dir", host.runDirectory])
            guard stats.status == 0 else { return false }
            let object = try JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any]
            let consoles = object?["consoles"] as? [[String: Any]] ?? []
            let evil = consoles.first { ($0["name"] as? String) == "evil" }
            let counters = evil?["counters"] as? [String: Any]
            quarantined = counters?["quarantine_reason"] as? String
            return (counters?["quarantines"] as? Int) == 1
        }
        #expect(quarantined?.contains("invalid out ring indices") == true, "reason: \(quarantined ?? "none")")
        // The table form names both consoles.
        let table = try ConchExecutable.run(["stats", "--run-dir", host.runDirectory])
        #expect(table.status == 0)
        #expect(table.stdout.contains("evil") && table.stdout.contains("good"))
        let only = try ConchExecutable.run(["stats", "good", "--json", "--run-dir", host.runDirectory])
        #expect(only.stdout.contains("\"good\"") && !only.stdout.contains("\"evil\""))
    }
}

/// Console 0's log: timestamps, rotation by size, reopen on SIGHUP.
@Suite("consoled logs")
struct ConsoledLogTests {
    @Test func timestampsRotationAndReopen() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled(["--timestamps", "--log-max-bytes", "8192", "--log-backups", "2"])
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let trigger = host.shared.path + "/after-hup"
        let built = try await ConsoledTests.build(
            host,
            store,
            name: "logger",
            script: """
                awk 'BEGIN { for (i = 0; i < 600; i++) printf "log line %05d .................................\\n", i }'
                echo FIRST-DONE
                while [ ! -e "\(trigger)" ]; do sleep 0.05; done
                echo AFTER-HUP
                sleep 600
                """
        )
        let hypervisor = try host.privilegedHypervisor()
        try hypervisor.unpause(built.domain.domid)
        let log = host.logDirectory + "/guest-logger.log"
        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        #expect(try host.eventually { text(log).contains("FIRST-DONE") })
        // ~30 KiB of output in 8 KiB files: the current one and two backups, no third.
        #expect(FileManager.default.fileExists(atPath: log + ".1"))
        #expect(FileManager.default.fileExists(atPath: log + ".2"))
        #expect(!FileManager.default.fileExists(atPath: log + ".3"))
        for path in [log, log + ".1", log + ".2"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            #expect(size <= 8192, "\(path) is \(size) bytes")
        }
        let lines = text(log).split(separator: "\n")
        let unstamped = lines.filter { !($0.hasPrefix("[20") && $0.dropFirst(20).hasPrefix("] ")) }
        #expect(!lines.isEmpty && unstamped.isEmpty, "lines without a timestamp: \(unstamped.prefix(3))")
        // logrotate moves the file away and sends SIGHUP: consoled opens a new one.
        try FileManager.default.moveItem(atPath: log, toPath: host.logDirectory + "/rotated-away.log")
        host.consoled!.process.signal(SIGHUP)
        #expect(try host.eventually { FileManager.default.fileExists(atPath: log) })
        FileManager.default.createFile(atPath: trigger, contents: nil)
        #expect(try host.eventually { text(log).contains("AFTER-HUP") })
        #expect(!text(host.logDirectory + "/rotated-away.log").contains("AFTER-HUP"))
    }
}

/// Consoles that appear and disappear while the guest and consoled run.
@Suite("channel hotplug")
struct ChannelHotplugTests {
    @Test func aChannelPluggedAtRunTimeConnectsAndUnplugs() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled()
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let hypervisor = try host.privilegedHypervisor()
        let builder = DomainBuilder(hypervisor: hypervisor, store: store)
        let device = "\"$CONCH_GUEST_DEV/xen-channel/org.conch.late.0\""
        let built = try await ConsoledTests.build(
            host,
            store,
            name: "hot",
            script: """
                while [ ! -e \(device) ]; do sleep 0.05; done
                echo plugged-in > \(device)
                while [ -e \(device) ]; do sleep 0.05; done
                echo device-gone
                sleep 600
                """
        )
        try hypervisor.unpause(built.domain.domid)
        #expect(
            try host.eventually {
                ((try? String(contentsOfFile: host.logDirectory + "/guest-hot.log", encoding: .utf8)) ?? "").contains(
                    "starting"
                )
            }
        )
        // What `conch channel-attach` will do: add console 1 to the running domain.
        let socketPath = host.runDirectory + "/late.sock"
        var configuration = try DomainConfiguration.parse(
            "name = \"hot\"\nkernel = \"/bin/sh\"\nchannel = [ \"name=org.conch.late.0, connection=socket, path=\(socketPath)\" ]\n",
            fileName: "hot.cfg"
        ).configuration
        configuration.arguments = []
        let plan = try await builder.plugConsole(1, of: configuration, into: built)
        let d = built.domain.domid.rawValue
        let client = try ConsoledTests.connectWhenServed(socketPath, host: host)
        var received = Data()
        #expect(
            try host.eventually {
                received += client.availableData
                return String(decoding: received, as: UTF8.self).contains("plugged-in")
            }
        )
        #expect(try await store.readString("/local/domain/\(d)/device/console/1/state") == "4")
        #expect(try await store.readString("/local/domain/0/backend/console/\(d)/1/state") == "4")

        // Unplug: the backend closes, the guest closes its end and removes the device,
        // consoled tears the console down and removes the socket.
        try await builder.unplugConsole(1, of: plan)
        #expect(
            try await host.eventuallyAsync {
                (try? await store.readString("/local/domain/\(d)/device/console/1/state")) == "6"
            }
        )
        #expect(try host.eventually { !FileManager.default.fileExists(atPath: socketPath) })
        #expect(
            try host.eventually {
                ((try? String(contentsOfFile: host.logDirectory + "/guest-hot.log", encoding: .utf8)) ?? "").contains(
                    "device-gone"
                )
            }
        )
        try await builder.removeConsoleNodes(1, of: plan)
        #expect(try await !store.exists("/local/domain/\(d)/device/console/1"))
    }
}

struct ConsoledTestFailure: Error, CustomStringConvertible {
    let description: String
}
