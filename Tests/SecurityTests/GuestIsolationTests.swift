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
import XenHypervisor
import XenTestKit

#if canImport(Glibc)
import Glibc
#endif

/// A guest is only its own domain (docs/SECURITY.md, "Guests").
@Suite("hostile guests: a guest is only its own domain")
struct GuestIsolationTests {
    /// From inside a guest: no daemon socket, no run directory, no host process, a
    /// read-only host, a scrubbed environment, only its own descriptors.
    @Test func aGuestCannotReachTheHost() async throws {
        let stack = try await Hostile.start()
        defer { stack.stop() }
        let built = try await stack.create(
            try Hostile.testGuest("intruder", "escape", [stack.host.runDirectory]),
            guestKernel: false
        )
        #expect(try stack.host.eventually { stack.report("intruder")["signal_host_init"] != nil })
        let report = stack.report("intruder")
        for socket in [
            "hypervisor.sock", "xenstored.sock", "consoled.sock", "consoled-control.sock", "consoled-keeper.sock",
        ] {
            #expect(report["connect_\(socket)"]?.hasPrefix("refused") == true, "\(socket): \(report)")
        }
        #expect(report["list_run_directory"]?.hasPrefix("refused") == true, "\(report)")
        #expect(report["write_outside_tmp"]?.hasPrefix("refused") == true, "\(report)")
        #expect(report["signal_host_init"]?.hasPrefix("refused") == true, "\(report)")
        #expect(
            report["environment_keys"] == "CONCH_DOMID,CONCH_GUEST_DEV,CONCH_HYPERVISOR_FD,HOME,LANG,PATH",
            "nothing of the host's environment: \(report["environment_keys"] ?? "")"
        )
        // 0-2 (stdio: /dev/null and its log), 3 (its hypervisor connection); anything
        // else is the program's own (the Swift runtime's epoll, eventfd and timerfd,
        // the directory being listed), never something of the host's.
        let descriptors = (report["open_descriptors"] ?? "").split(separator: ",").compactMap { Int($0) }
        #expect(Array(descriptors.prefix(4)) == [0, 1, 2, 3], "\(report)")
        #expect(report["descriptor_0"] == "/dev/null")
        #expect(report["descriptor_3"]?.hasPrefix("socket:") == true)
        for fd in descriptors where fd > 3 {
            let target = report["descriptor_\(fd)"] ?? ""
            #expect(target.hasPrefix("anon_inode:") || target == "?", "fd \(fd) crossed over: \(target)")
        }
        let identity = report["uid"] ?? ""
        if geteuid() == 0 {
            let expected = GuestSandbox.defaultUIDBase + UInt32(built.domain.domid.rawValue)
            #expect(identity.hasPrefix("\(expected) "), "a uid of its own: \(identity)")
        }
        #expect(Int(report["visible_processes"] ?? "") ?? 99 < 5, "only its own processes: \(report)")
    }

    /// Every daemon socket refuses a peer that is not the host's toolstack — here
    /// one that could reach the socket (the run directory opened up for the test):
    /// another uid when the tests run as root, else a process in another user
    /// namespace, which is what a guest is.
    @Test func daemonSocketsRefuseAnyoneButTheHostToolstack() async throws {
        let stack = try await Hostile.start()
        defer { stack.stop() }
        let share = try ScratchDirectory.guestReadable()
        defer { share.remove() }
        try await stack.create(
            """
            name = "victim"
            kernel = "/bin/sh"
            cmdline = "-c 'sleep 600'"
            channel = [ "name=org.t.0, connection=socket, path=\(share.path)/channel.sock" ]
            """,
            guestKernel: true
        )
        #expect(try stack.host.eventually { FileManager.default.fileExists(atPath: share.path + "/channel.sock") })
        let run = stack.host.runDirectory
        if geteuid() == 0 {
            // Only the peer check may stand between the other uid and the daemons.
            chmod(run, 0o711)
            for socket in [
                "hypervisor.sock", "xenstored.sock", "consoled.sock", "consoled-control.sock",
                "consoled-keeper.sock",
            ] {
                chmod(run + "/" + socket, 0o666)
            }
            chmod(share.path + "/channel.sock", 0o666)
        }
        let identify = "00" + Array(#"{"identify":{}}"#.utf8).map { String(format: "%02x", $0) }.joined()
        let read = "02000000" + "00000000" + "00000000" + "02000000" + "2f00"
        let history = Array("history 1\n".utf8).map { String(format: "%02x", $0) }.joined()
        let attach = Array(#"{"op":"attach","key":"1.1"}"#.utf8).map { String(format: "%02x", $0) }.joined()
        for (path, kind, payload) in [
            (run + "/hypervisor.sock", "seqpacket", identify), (run + "/xenstored.sock", "stream", read),
            (run + "/consoled.sock", "stream", ""), (run + "/consoled-control.sock", "stream", history),
            (run + "/consoled-keeper.sock", "seqpacket", attach), (share.path + "/channel.sock", "stream", ""),
        ] {
            let outcome = try runAsForeignPeer(probeScript, [path, kind, payload])
            #expect(outcome.hasPrefix("refused: "), "\(path): \(outcome)")
        }
        // The same probe as the toolstack itself is answered: the check is not a blanket refusal.
        let ours = try runProgram("/usr/bin/python3", ["-c", probeScript, run + "/xenstored.sock", "stream", read])
        #expect(ours.stdout.hasPrefix("answered"), "\(ours.stdout) \(ours.stderr)")
    }

    /// Xen lets a domU write to the hypervisor console only if policy allows it.
    @Test func consoleIOIsRefusedUnlessTheDomainMayUseIt() async throws {
        let stack = try await Hostile.start(consoled: false)
        defer { stack.stop() }
        try await stack.create(try Hostile.testGuest("quiet", "console-io"), guestKernel: false)
        try await stack.create(
            try Hostile.testGuest("loud", "console-io", extra: "conch_console_io = 1"),
            guestKernel: false
        )
        #expect(try stack.host.eventually { stack.report("quiet")["console_io"] != nil })
        #expect(try stack.host.eventually { stack.report("loud")["console_io"] != nil })
        #expect(stack.report("quiet")["console_io"]?.hasPrefix("refused permission denied: console_io") == true)
        #expect(stack.report("loud")["console_io"] == "allowed")
        let dmesg = String(decoding: try stack.host.privilegedHypervisor().readConsole(clear: false), as: UTF8.self)
        #expect(dmesg.contains("console_io from d2"))
        #expect(!dmesg.contains("console_io from d1"))
    }

    /// `destroy` ends every process of a domain, including one that left the
    /// guest's process group and session.
    @Test func destroyEndsEveryProcessOfTheDomain() async throws {
        let stack = try await Hostile.start(consoled: false)
        defer { stack.stop() }
        let marker = "\(Int.random(in: 100_000...999_999)).5"
        let built = try await stack.create(
            """
            name = "escapee"
            kernel = "/bin/sh"
            cmdline = "-c 'setsid sleep \(marker) & echo started; sleep 600'"
            """,
            guestKernel: false
        )
        func survivors() -> [Int32] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
                guard let pid = Int32(entry),
                    let text = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8)
                else { return nil }
                return text.split(separator: "\0").contains { $0 == marker } ? pid : nil
            }
        }
        #expect(stack.host.eventually { !survivors().isEmpty }, "the escaping process never started")
        try stack.host.privilegedHypervisor().destroy(built.domain.domid)
        #expect(stack.host.eventually { survivors().isEmpty }, "still running after destroy: \(survivors())")
    }
}
