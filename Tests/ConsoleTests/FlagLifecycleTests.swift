//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import Testing
import Toolstack
import XenABI
import XenHypervisor
import XenRing
import XenTestKit
import XenstoreClient

/// The `connection` flag from the guest's point of view: a consoled that restarts
/// leaves every ring CONNECTED (the ring buffers, the next consoled drains it);
/// only a backend that goes away for good says DISCONNECTED.
@Suite("The connection flag's lifecycle")
struct FlagLifecycleTests {
    static let lineCount = 150
    /// Numbered lines for about four seconds, then a mark.
    static let script = """
        i=0
        while [ $i -lt \(lineCount) ]; do echo "line $i"; i=$((i + 1)); sleep 0.025; done
        echo LINES-DONE
        sleep 600
        """

    static func lineNumbers(_ text: String) -> [Int] {
        // By line breaks, not "\n": the guest kernel's banner ends in "\r\n", one Character.
        text.split(whereSeparator: \.isNewline).compactMap { line in
            line.hasPrefix("line ") ? Int(line.dropFirst(5)) : nil
        }
    }

    /// Linux 7.1's frontend drops what it writes while the page says DISCONNECTED:
    /// across a consoled restart (SIGTERM, then a new consoled) it loses nothing,
    /// because the page stays CONNECTED and the ring waits for the new consoled.
    @Test func aConsoledRestartLosesNothingForLinux71sFrontend() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled()
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let built = try await ConsoledTests.build(
            host,
            store,
            name: "l71",
            script: Self.script,
            frontend: .dropWhileDisconnected
        )
        let domid = built.domain.domid
        let hypervisor = try host.privilegedHypervisor()
        let page = ConsoleRing(memory: try hypervisor.mapGrant(domid, ref: .console, readOnly: true))
        #expect(host.eventually { page.connection == .connected }, "consoled never marked the page CONNECTED")
        try hypervisor.unpause(domid)
        let log = host.logDirectory + "/guest-l71.log"
        func logText() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        #expect(host.eventually { Self.lineNumbers(logText()).count >= 10 }, "the guest never wrote")

        host.stopConsoled()
        #expect(page.connection == .connected, "a stopping consoled must leave the page CONNECTED")
        usleep(1_000_000)  // the guest writes on meanwhile, into the ring
        #expect(!logText().contains("LINES-DONE"), "consoled was down too late to test anything")
        try host.startConsoled()

        #expect(host.eventually { logText().contains("LINES-DONE") }, "log: \(logText())")
        let numbers = Self.lineNumbers(logText())
        #expect(
            numbers == Array(0..<Self.lineCount),
            """
            \(numbers.count) lines; missing: \(Set(0..<Self.lineCount).subtracting(numbers).sorted()); \
            log begins: \(logText().prefix(300).debugDescription)
            """
        )
    }

    /// `conch console-release`: the backend goes away for good for one domain. Its
    /// page says DISCONNECTED, consoled leaves it alone from then on, and a domain
    /// it does not serve is an error.
    @Test func releasingADomainMarksItDisconnectedForGood() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled()
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let built = try await ConsoledTests.build(host, store, name: "rel", script: "echo up; sleep 600")
        let domid = built.domain.domid
        let hypervisor = try host.privilegedHypervisor()
        let page = ConsoleRing(memory: try hypervisor.mapGrant(domid, ref: .console, readOnly: true))
        try hypervisor.unpause(domid)
        #expect(host.eventually { page.connection == .connected })

        let released = try ConchExecutable.run(["console-release", "rel", "--run-dir", host.runDirectory])
        #expect(released.status == 0, "\(released.stderr)")
        #expect(released.stdout == "released domain \(domid.rawValue): 1 console(s) marked DISCONNECTED\n")
        #expect(page.connection == .disconnected)
        // Something changes in the domain's tree: consoled does not take it back.
        try await store.write(ConsoleLayout.home(domid) + "/console/tty", "")
        usleep(500_000)
        #expect(page.connection == .disconnected, "consoled served a released domain again")

        let again = try ConchExecutable.run(["console-release", "\(domid.rawValue)", "--run-dir", host.runDirectory])
        #expect(again.status != 0)
        #expect(again.stderr.contains("domain \(domid.rawValue) is not served"), "\(again.stderr)")
    }

    /// Linux 7.1 drops channel writes too while the page says DISCONNECTED; the
    /// legacy frontend leaves them in the ring. (consoled is killed first, so that
    /// nobody drains the ring, restores the flag or closes the device meanwhile.)
    @Test(arguments: [FrontendMode.dropWhileDisconnected, .legacy])
    func channelWritesWhileDisconnected(_ mode: FrontendMode) async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled()
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let built = try await ConsoledTests.build(
            host,
            store,
            name: "chan",
            script: """
                c="$CONCH_GUEST_DEV/xen-channel/org.t.pty"
                while [ ! -e "$c" ]; do sleep 0.05; done
                i=0
                while [ $i -lt 3000 ]; do echo "line $i" > "$c"; i=$((i + 1)); sleep 0.1; done
                sleep 600
                """,
            channels: ["name=org.t.pty, connection=pty"],
            frontend: mode
        )
        let domid = built.domain.domid
        let hypervisor = try host.privilegedHypervisor()
        try hypervisor.unpause(domid)
        let frontend = ConsoleLayout.frontend(domid, devid: 1)
        #expect(
            await host.eventuallyAsync { (try? await store.readString(frontend + "/state")) == "4" },
            "the channel never connected"
        )
        host.stopConsoled(kill: true)
        let ref = try #require(UInt32(try await store.readString(frontend + "/ring-ref")))
        let ring = ConsoleRing(memory: try hypervisor.mapGrant(domid, ref: GrantRef(ref), readOnly: false))
        func outProd() -> UInt32 { ring.memory.load32(at: ConsoleInterface.outProdOffset, ordering: .acquiring) }
        ring.connection = .disconnected
        usleep(300_000)  // a write in flight when the flag changed lands
        // consoled is dead: consume what is there, so that a full ring cannot be
        // what stops a frontend that still writes (a slow run fills it).
        try ring.backend.input.consume(ring.backend.input.available())
        let before = outProd()
        usleep(1_500_000)  // the guest writes a line every 0.1 s meanwhile
        let after = outProd()
        switch mode {
        case .dropWhileDisconnected:
            #expect(after == before, "Linux 7.1's frontend wrote \(after &- before) bytes into a DISCONNECTED ring")
        default:
            #expect(after &- before > 0, "the legacy frontend stopped writing")
        }
    }

    /// The mixed upgrade case: a consoled that never marks a page CONNECTED says so
    /// in xenstore, and `conch create` warns before it builds a DISCONNECTED page
    /// for a guest whose frontend reads the flag.
    @Test func createWarnsWhenTheBackendIsFlagUnaware() throws {
        let directory = try ScratchDirectory(prefix: "conch-mixed")
        defer { directory.remove() }
        let up = try ConchExecutable.run(["up", "--detach", "--no-consoled", "--run-dir", directory.path])
        try #require(up.status == 0, "conch up: \(up.stderr)")
        defer { _ = try? ConchExecutable.run(["down", "--run-dir", directory.path]) }
        let consoled = try DaemonProcess(
            ["consoled", "--legacy-flag", "--run-dir", directory.path],
            readyPath: directory.path + "/consoled.sock",
            logDirectory: directory.path + "/logs"
        )
        defer { consoled.stop() }
        let node = try ConchExecutable.run([
            "store", "read", ConsoleLayout.consoledSetsFlag, "--run-dir", directory.path,
        ])
        #expect(node.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "\(node.stderr)")

        func create(_ name: String, frontend: FrontendMode, _ options: [String] = []) throws -> String {
            let file = directory.path + "/\(name).cfg"
            try
                "name = \"\(name)\"\nkernel = \"/bin/sleep\"\nextra = \"600\"\nconch_frontend = \"\(frontend.rawValue)\"\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
            let created = try ConchExecutable.run(["create", file, "--no-wait", "--run-dir", directory.path] + options)
            #expect(created.status == 0, "create \(name): \(created.stderr)")
            return created.stderr
        }
        #expect(try create("seed", frontend: .flagAware).contains("warning: consoled runs with --legacy-flag"))
        #expect(try create("l71", frontend: .dropWhileDisconnected).contains("console 0 would stay silent"))
        #expect(!(try create("old", frontend: .legacy).contains("warning")), "a legacy frontend ignores the flag")
        #expect(
            !(try create("zeroed", frontend: .flagAware, ["--legacy-builder"]).contains("warning")),
            "a legacy builder leaves the page CONNECTED"
        )
    }
}
