//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras
import Testing
import XenABI
import XenTestKit
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// After `kill -9` of any one daemon the stack returns to full service by itself.
@Suite("recovery: every daemon can die")
struct RecoveryTests {
    /// A guest that answers every line on its socket channel with `echo: <line>`.
    static func echoGuest(_ name: String, socket: String) -> String {
        """
        name = "\(name)"
        kernel = "/bin/sh"
        cmdline = "-c 'c=$CONCH_GUEST_DEV/xen-channel/org.t.echo; while [ ! -e $c ]; do sleep 0.05; done; \
        while IFS= read -r l; do echo \\"echo: $l\\"; done <$c >$c'"
        channel = [ "name=org.t.echo, connection=socket, path=\(socket)" ]
        """
    }

    /// Connects to `socket`, sends `line`, returns what comes back first (or nil).
    static func exchange(_ socket: String, _ line: String) -> String? {
        guard let fd = try? UnixSocketPath.connect(socket) else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array((line + "\n").utf8)
        // SAFETY: the pointer is used only during the call, for the array's count.
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else { return nil }
        var buffer = [UInt8](repeating: 0, count: 256)
        let got = read(fd, &buffer, buffer.count)
        return got > 0 ? String(decoding: buffer.prefix(got), as: UTF8.self) : nil
    }

    /// The keeper (which holds socket channels' listeners) is restarted by consoled:
    /// the channel's socket serves again.
    @Test func aKilledKeeperIsRestarted() async throws {
        let stack = try await Hostile.start()
        defer { stack.stop() }
        let socket = stack.host.runDirectory + "/echo.sock"
        try await stack.create(Self.echoGuest("echoer", socket: socket), guestKernel: true)
        #expect(stack.host.eventually { Self.exchange(socket, "one")?.contains("echo: one") == true })
        let keeper = try #require(PidFile(path: stack.host.runDirectory + "/consoled-keeper.pid").read())
        kill(keeper, SIGKILL)
        #expect(
            stack.host.eventually { Self.exchange(socket, "two")?.contains("echo: two") == true },
            "the channel never served again; consoled: \(stack.host.consoled?.log.suffix(2000) ?? "")"
        )
        let restarted = PidFile(path: stack.host.runDirectory + "/consoled-keeper.pid").read()
        #expect(restarted != nil && restarted != keeper)
    }

    /// xenstored resumes from its journal: the store, the domains and their rings
    /// are back; consoled reconnects; a guest's next request is answered; new
    /// domains can be created.
    @Test func aKilledXenstoredResumesWhereItWas() async throws {
        let stack = try await Hostile.start()
        defer { stack.stop() }
        let shared = stack.host.shared.path
        let first = try await stack.create(
            try Hostile.testGuest("ringer", "xenstore", ["stay", shared + "/go"]),
            guestKernel: false
        )
        #expect(try stack.host.eventually { stack.report("ringer")["watch"] != nil })
        stack.store.close()
        stack.host.xenstored?.kill()
        try stack.host.startXenstored()
        let store = try await XenstoreClient.connect(socketPath: stack.host.xenstoredSocket)
        defer { store.close() }
        let d = first.domain.domid.rawValue
        #expect(try await store.readString("/local/domain/\(d)/name") == "ringer")
        #expect(try await store.readString("/local/domain/\(d)/data/hello") == "world")
        #expect(try await store.isDomainIntroduced(first.domain.domid))
        // The guest's ring is served again where it stood.
        FileManager.default.createFile(atPath: shared + "/go-1", contents: nil)
        #expect(
            try stack.host.eventually { stack.report("ringer")["late_read_1"] == "world" },
            "\(stack.report("ringer"))"
        )
        // consoled reconnected: a domain created now gets its console served.
        let restarted = Hostile(host: stack.host, store: store)
        try await restarted.create(
            "name = \"after\"\nkernel = \"/bin/sh\"\ncmdline = \"-c 'echo after restart; sleep 600'\"\n",
            guestKernel: true
        )
        #expect(
            try stack.host.eventually {
                ((try? String(contentsOfFile: stack.host.logDirectory + "/guest-after.log", encoding: .utf8)) ?? "")
                    .contains("after restart")
            },
            "consoled did not serve a domain created after xenstored restarted"
        )
    }

    /// The hypervisor's guests die with it; xenstored and consoled reconnect to the
    /// new one, release the dead domains and serve new ones.
    @Test func aKilledHypervisorIsRecoveredFrom() async throws {
        let stack = try await Hostile.start()
        defer { stack.stop() }
        let socket = stack.host.runDirectory + "/echo.sock"
        let before = try await stack.create(Self.echoGuest("mortal", socket: socket), guestKernel: true)
        #expect(stack.host.eventually { Self.exchange(socket, "hi")?.contains("echo: hi") == true })
        let guest = try #require(try stack.host.privilegedHypervisor().listDomains().first?.pid)
        try stack.host.restartHypervisor()
        #expect(stack.host.eventually { !isRunning(guest) }, "the guest outlived its hypervisor")
        #expect(
            try await stack.host.eventuallyAsync { try await !stack.store.isDomainIntroduced(before.domain.domid) },
            "xenstored still holds the dead domain"
        )
        let stats = {
            (try? ConchExecutable.run(["stats", "--json", "--run-dir", stack.host.runDirectory]).stdout) ?? ""
        }
        #expect(stack.host.eventually { !stats().contains("org.t.echo") }, "consoled still serves the dead domain")
        let socket2 = stack.host.runDirectory + "/echo2.sock"
        let fresh = Hostile(host: stack.host, store: stack.store)
        try await fresh.create(Self.echoGuest("reborn", socket: socket2), guestKernel: true)
        #expect(stack.host.eventually { Self.exchange(socket2, "again")?.contains("echo: again") == true })
    }
}

/// Under `conch up`: domains that end on their own, and every domain when the
/// hypervisor dies, leave nothing behind — no record, no xenstore tree.
@Suite("recovery: what a dead domain leaves behind")
struct ReaperTests {
    final class Up {
        let directory: ScratchDirectory
        init() throws {
            directory = try ScratchDirectory(prefix: "conch-reap")
            let up = try ConchExecutable.run(["up", "--detach", "--run-dir", directory.path])
            guard up.status == 0 else { throw ConchFailed(description: "conch up: \(up.stderr)") }
        }
        @discardableResult
        func conch(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            try ConchExecutable.run(arguments + ["--run-dir", directory.path])
        }
        deinit {
            _ = try? conch(["down"])
            directory.remove()
        }
    }

    static func eventually(_ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }

    @Test func domainsThatEndOnTheirOwnAreReaped() throws {
        let up = try Up()
        let config = up.directory.path + "/brief.cfg"
        try "name = \"brief\"\nkernel = \"/bin/sh\"\ncmdline = \"-c 'echo bye'\"\n".write(
            toFile: config,
            atomically: true,
            encoding: .utf8
        )
        let created = try up.conch(["create", config])
        #expect(created.status == 0, "\(created.stderr)")
        let domid = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(
            try Self.eventually {
                try up.conch(["store", "exists", "/local/domain/\(domid)"]).status != 0
                    && !FileManager.default.fileExists(atPath: up.directory.path + "/domains/\(domid).json")
            },
            "the domain's tree or record is still there"
        )
        #expect(try up.conch(["store", "ls", "/libxl"]).stdout.isEmpty)
        #expect(try up.conch(["store", "ls", "/vm"]).stdout.isEmpty)
    }

    @Test func aRestartedHypervisorLeavesACleanHost() throws {
        let up = try Up()
        let config = up.directory.path + "/long.cfg"
        try "name = \"long\"\nkernel = \"/bin/sh\"\ncmdline = \"-c 'sleep 600'\"\n".write(
            toFile: config,
            atomically: true,
            encoding: .utf8
        )
        #expect(try up.conch(["create", config]).status == 0)
        let hypervisor = try #require(PidFile(path: up.directory.path + "/hypervisor.pid").read())
        kill(hypervisor, SIGKILL)
        // The supervisor restarts it; the reaper clears what the dead domain left.
        #expect(
            try Self.eventually {
                try up.conch(["list"]).stdout.split(separator: "\n").count == 2  // header and Domain-0
                    && (try? FileManager.default.contentsOfDirectory(atPath: up.directory.path + "/domains"))?
                        .isEmpty ?? true
                    && !up.conch(["store", "ls", "/local/domain"]).stdout.split(separator: "\n")
                        .contains { $0.first?.isNumber == true && !$0.hasPrefix("0 ") }
            },
            "list: \((try? up.conch(["list"]).stdout) ?? "")"
        )
        // And the host serves again.
        let again = try up.conch(["create", config])
        #expect(again.status == 0, "create after the restart: \(again.stderr)")
    }
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
func isRunning(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return false }
    let state = stat[stat.index(after: close)...].split(separator: " ").first ?? ""
    return state != "Z" && state != "X"
}
