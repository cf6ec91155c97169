//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Testing
import XenHypervisor
import XenSim
import XenTestKit
import XenstoreClient

/// Xen's own console client (Debian's `xenconsole` from xen-utils-4.17) attaches to
/// consoles served by Conch's consoled, through Conch's xenstored.
enum Xenconsole {
    /// `$CONCH_XENCONSOLE` (what .ci/run extracts from the package), else the
    /// installed package's path.
    static let path: String? = {
        let candidates = [
            ProcessInfo.processInfo.environment["CONCH_XENCONSOLE"], "/usr/lib/xen-4.17/bin/xenconsole",
        ].compactMap { $0 }
        let found = candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
        if found == nil { print("skipped: install xen-utils-4.17 (xenconsole not found; set CONCH_XENCONSOLE)") }
        return found
    }()
}

@Suite("xenconsole presence")
struct XenconsolePresence {
    @Test(.enabled(if: runningInCI, "checked only in CI, where .ci/run provides xenconsole"))
    func xenconsoleIsPresentInCI() {
        #expect(Xenconsole.path != nil, "xenconsole is missing in CI: .ci/run must extract xen-utils-4.17")
    }
}

@Suite(
    "xenconsole against consoled",
    .serialized,
    .enabled(if: Xenconsole.path != nil, "skipped: install xen-utils-4.17")
)
struct XenconsoleInteropTests {
    /// Types a line into `xenconsole --type pv [--num N] DOMID` and waits for the
    /// guest's echo of it.
    static func roundTrip(_ host: HostStack, domid: UInt16, number: Int, line: String) throws -> String {
        var environment = ProcessInfo.processInfo.environment
        environment["XENSTORED_PATH"] = host.xenstoredSocket
        let process = try TestProcess(
            Xenconsole.path!,
            ["--type", "pv", "--num", "\(number)", "--interactive", "\(domid)"],
            environment: environment,
            input: .pipe,
            output: .pipe,
            error: .standardOutput
        )
        // SIGTERM ends xenconsole's loop; SIGKILL if it lingers, so its lock goes.
        defer { process.stop(grace: 1) }
        var seen = Data()
        let reader = process.standardOutput!
        _ = try host.eventually(seconds: 30) {
            guard process.isRunning else { return true }
            try? process.standardInput!.write(contentsOf: Data((line + "\n").utf8))
            var fds = [pollfd(fd: reader.fileDescriptor, events: Int16(POLLIN), revents: 0)]
            if poll(&fds, 1, 300) > 0 { seen += reader.availableData }
            return String(decoding: seen, as: UTF8.self).contains("echo:" + line)
        }
        if !process.isRunning { seen += (try? reader.readToEnd()).flatMap { $0 } ?? Data() }
        return String(decoding: seen, as: UTF8.self)
            + (process.isRunning ? "" : " [exited \(process.status)]")
    }

    @Test func attachesToConsoleZeroAndAPtyChannel() async throws {
        let host = try HostStack(xenstored: true)
        defer { host.stop() }
        try host.startConsoled()
        let store = try await XenstoreClient.connect(socketPath: host.xenstoredSocket)
        defer { store.close() }
        let built = try await ConsoledTests.build(
            host,
            store,
            name: "xc",
            script: """
                (while read -r line < "$CONCH_GUEST_DEV/hvc1"; do echo "echo:$line" > "$CONCH_GUEST_DEV/hvc1"; done) &
                while read -r line; do echo "echo:$line"; done
                """,
            channels: ["name=org.conch.tty.0, connection=pty"]
        )
        let hypervisor = try host.privilegedHypervisor()
        try hypervisor.unpause(built.domain.domid)
        let d = built.domain.domid.rawValue
        #expect(
            try await host.eventuallyAsync {
                (try? await store.readString("/local/domain/\(d)/device/console/1/tty"))?.hasPrefix("/dev/pts/")
                    ?? false
            }
        )
        let console0 = try Self.roundTrip(host, domid: d, number: 0, line: "hello-console")
        #expect(console0.contains("echo:hello-console"), "xenconsole showed: \(console0)")
        let channel = try Self.roundTrip(host, domid: d, number: 1, line: "hello-channel")
        #expect(channel.contains("echo:hello-channel"), "xenconsole showed: \(channel)")
    }
}
