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
import ToolstackRuntime
import XenABI
import XenTestKit

#if canImport(Glibc)
import Glibc
#endif

/// Backends and tools never follow a path the frontend controls (the XSA-178 class).
@Suite("hostile guests: nodes a guest wrote are never followed")
struct UntrustedNodesTests {
    /// A channel whose `backend` the guest aims at a directory of its own asking for
    /// a socket at a file's path: the file stays, no socket appears.
    @Test func aGuestCannotMakeTheKeeperUnlinkAFile() async throws {
        let stack = try await Hostile.start()
        defer { stack.stop() }
        let share = try ScratchDirectory.guestReadable()
        defer { share.remove() }
        let victim = share.path + "/precious"
        try "keep me\n".write(toFile: victim, atomically: true, encoding: .utf8)
        try await stack.create(
            try Hostile.testGuest(
                "mallory",
                "tamper-backend",
                ["unlink", victim],
                extra: "channel = [ \"name=org.t.own, connection=pty\" ]"
            ),
            guestKernel: false
        )
        #expect(try stack.host.eventually { stack.report("mallory")["tampered"] != nil })
        #expect(stack.report("mallory")["tampered"] == "unlink", "\(stack.host.guestOutput("mallory"))")
        // Give consoled every chance to act on it: a domain created after the attack
        // is served, so consoled has processed the watch events before it.
        try await stack.create(
            "name = \"witness\"\nkernel = \"/bin/sh\"\ncmdline = \"-c 'echo witness up; sleep 600'\"\n",
            guestKernel: true
        )
        #expect(
            try stack.host.eventually {
                ((try? String(contentsOfFile: stack.host.logDirectory + "/guest-witness.log", encoding: .utf8)) ?? "")
                    .contains("witness up")
            }
        )
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "keep me\n", "the victim file was replaced")
        let stats = try ConchExecutable.run(["stats", "--json", "--run-dir", stack.host.runDirectory]).stdout
        #expect(!stats.contains("org.evil.0"), "the guest's made-up backend is not served: \(stats)")
    }

    /// A guest that aims its connected channel's `backend` at another domain's
    /// backend directory and closes: the other domain's channel stays connected.
    @Test func aGuestCannotCloseAnotherDomainsChannel() async throws {
        let stack = try await Hostile.start()
        defer { stack.stop() }
        let share = try ScratchDirectory.guestReadable()
        defer { share.remove() }
        let victim = try await stack.create(
            """
            name = "bystander"
            kernel = "/bin/sh"
            cmdline = "-c 'sleep 600'"
            channel = [ "name=org.t.victim, connection=socket, path=\(share.path)/victim.sock" ]
            """,
            guestKernel: true
        )
        let victimBackend = ConsoleLayout.backend(of: victim.domain.domid, devid: 1, backend: .dom0)
        #expect(
            try await stack.host.eventuallyAsync { try await stack.store.readString(victimBackend + "/state") == "4" }
        )
        let attacker = try await stack.create(
            try Hostile.testGuest(
                "mallory",
                "tamper-backend",
                ["close", victimBackend],
                extra: "channel = [ \"name=org.t.own, connection=pty\" ]"
            ),
            guestKernel: false
        )
        #expect(try stack.host.eventually { stack.report("mallory")["tampered"] != nil })
        #expect(stack.report("mallory")["own_channel_state"] == "4", "\(stack.host.guestOutput("mallory"))")
        // consoled tears down the attacker's own channel (its frontend closed) and
        // closes the backend it owns for it — not the bystander's.
        let attackerBackend = ConsoleLayout.backend(of: attacker.domain.domid, devid: 1, backend: .dom0)
        #expect(
            try await stack.host.eventuallyAsync {
                try await stack.store.readString(attackerBackend + "/state") == "6"
            },
            "the attacker's own backend is closed"
        )
        #expect(try await stack.store.readString(victimBackend + "/state") == "4", "the bystander's channel was closed")
    }

    /// A guest that names a backend of its own making after its real channel, with
    /// a socket it chose: `conch console --channel` and `channel-list` still use the
    /// toolstack's record.
    @Test func toolsReadTheToolstacksRecordNotTheGuests() async throws {
        let stack = try await Hostile.start()
        defer { stack.stop() }
        let share = try ScratchDirectory.guestReadable()
        defer { share.remove() }
        // The attacker's socket, where a fooled `conch console` would connect.
        let trap = share.path + "/trap.sock"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        try UnixSocketPath.bind(listener, to: trap)
        listen(listener, 4)
        _ = fcntl(listener, F_SETFL, O_NONBLOCK)
        let built = try await stack.create(
            try Hostile.testGuest(
                "mallory",
                "tamper-backend",
                ["impersonate", "org.t.real", trap],
                extra: "channel = [ \"name=org.t.real, connection=socket, path=\(share.path)/real.sock\" ]"
            ),
            guestKernel: false
        )
        #expect(try stack.host.eventually { stack.report("mallory")["tampered"] == "impersonate" })
        let d = built.domain.domid.rawValue
        let console = try ConchExecutable.run(
            ["console", "\(d)", "--channel", "org.t.real", "--linger", "0.2", "--run-dir", stack.host.runDirectory],
            input: ""
        )
        #expect(accept(listener, nil, nil) < 0, "conch console connected to the guest's socket")
        #expect(console.status == 0, "conch console used the real channel: \(console.stderr)")
        let list = try ConchExecutable.run(["channel-list", "\(d)", "--run-dir", stack.host.runDirectory]).stdout
        let row = list.split(separator: "\n").dropFirst().first ?? ""
        #expect(row.hasPrefix("0   0  "), "the backend domid comes from the backend path, not backend-id 7: \(list)")
    }

    /// A socket channel's path naming an existing file that is not a socket is an
    /// error when the domain is created; the file is untouched.
    @Test func aSocketPathThatIsAFileIsRefusedAtCreate() async throws {
        let stack = try await Hostile.start()
        defer { stack.stop() }
        let share = try ScratchDirectory.guestReadable()
        defer { share.remove() }
        let file = share.path + "/notes.txt"
        try "mine\n".write(toFile: file, atomically: true, encoding: .utf8)
        await #expect {
            try await stack.create(
                """
                name = "careless"
                kernel = "/bin/sh"
                channel = [ "name=org.t.0, connection=socket, path=\(file)" ]
                """,
                guestKernel: true
            )
        } throws: { error in
            "\(error)".contains("\(file) already exists and is not a socket")
        }
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "mine\n")
        await #expect {
            try await stack.create(
                """
                name = "nowhere"
                kernel = "/bin/sh"
                channel = [ "name=org.t.0, connection=socket, path=\(share.path)/missing/dir/x.sock" ]
                """,
                guestKernel: true
            )
        } throws: { error in
            "\(error)".contains("the directory of its socket \(share.path)/missing/dir/x.sock does not exist")
        }
    }
}
