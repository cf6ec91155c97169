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
import XenTestKit

/// `Type=notify` units: the daemon says READY=1 to `$NOTIFY_SOCKET` once it
/// serves, so units ordered after it (xen-init-dom0 after xenstored) find it up.
@Suite("systemd readiness")
struct SystemdNotifyTests {
    /// A datagram socket standing in for systemd's; `abstract` binds it in the
    /// abstract namespace (NOTIFY_SOCKET=@name), as systemd does.
    final class NotifySocket {
        let fd: Int32
        let name: String
        init(path: String, abstract: Bool) throws {
            let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            self.fd = fd
            name = abstract ? "@" + path : path
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            var bytes = Array(path.utf8)
            if abstract { bytes.insert(0, at: 0) }
            // SAFETY: the path is far shorter than sun_path; the pointer lives for the copy.
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (index, byte) in bytes.enumerated() { raw[index] = byte }
            }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
            // SAFETY: `address` outlives the bind call.
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            try #require(bound == 0, "bind: \(String(cString: strerror(errno)))")
        }
        deinit { close(fd) }

        /// The next datagram, or nil after `seconds`.
        func receive(seconds: Int32) -> String? {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, seconds * 1000) > 0 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 512)
            let got = recv(fd, &buffer, buffer.count, 0)
            return got > 0 ? String(decoding: buffer[..<got], as: UTF8.self) : nil
        }
    }

    @Test func readyGoesToAnAbstractOrAPathSocket() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let abstract = try NotifySocket(path: "conch-notify-\(getpid())", abstract: true)
        #expect(SystemdNotify.ready(environment: ["NOTIFY_SOCKET": abstract.name]))
        #expect(abstract.receive(seconds: 5) == "READY=1\n")
        let named = try NotifySocket(path: scratch.path + "/notify", abstract: false)
        #expect(SystemdNotify.ready(environment: ["NOTIFY_SOCKET": named.name]))
        #expect(named.receive(seconds: 5) == "READY=1\n")
        // Not under systemd: nothing to do, and no failure.
        #expect(!SystemdNotify.ready(environment: [:]))
    }

    @Test func xenstoredIsReadyOnlyOnceItServes() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let notify = try NotifySocket(path: scratch.path + "/notify", abstract: false)
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notify.name
        let socketPath = scratch.path + "/xs.sock"
        let daemon = try TestProcess(
            try ConchExecutable.path(),
            ["xenstored", "--socket", socketPath],
            environment: environment
        )
        defer { daemon.stop() }
        #expect(notify.receive(seconds: 60) == "READY=1\n")
        #expect(XenstoredProcess.canConnect(socketPath), "READY=1 came before the socket accepted connections")
    }
}
