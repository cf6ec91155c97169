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

/// `conch-device-model` as libxl runs it: a real process, a real xenstored, QMP
/// over the Unix socket libxl names.
@Suite("conch device-model")
struct DeviceModelShimTests {
    /// Reads CRLF-terminated QMP messages from a connected socket.
    final class QMPClient {
        let fd: Int32
        var pending: [UInt8] = []
        init(_ path: String) throws { fd = try UnixSocketPath.connect(path) }
        deinit { close(fd) }

        func next() throws -> [String: Any] {
            while true {
                if let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Array(pending[...end])
                    pending.removeFirst(end + 1)
                    return try #require(JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
                }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 30_000) > 0 else { throw Timeout() }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let got = read(fd, &buffer, buffer.count)
                guard got > 0 else { throw Timeout() }
                pending += buffer[..<got]
            }
        }

        func execute(_ command: String) throws -> [String: Any] {
            let message = Array("{\"execute\":\"\(command)\"}\r\n".utf8)
            _ = message.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            return try next()
        }

        struct Timeout: Error {}
    }

    @Test func satisfiesLibxlAndHandsTheChannelsToConsoled() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        let store = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { store.close() }
        let qmp = daemon.directory.path + "/qmp-libxl-5"
        let model = try TestProcess(
            try ConchExecutable.path(),
            [
                "device-model", "-xen-domid", "5", "-no-shutdown", "-chardev",
                "socket,id=libxl-cmd,path=\(qmp),server=on,wait=off", "-mon", "chardev=libxl-cmd,mode=control",
                "-chardev", "pty,id=libxl-channel1", "-chardev",
                "socket,id=libxl-channel2,path=/run/agent.sock,server=on,wait=off", "-nodefaults", "-name", "g5",
                "-machine", "xenpv", "-m", "128",
            ],
            environment: daemon.clientEnvironment,
            error: .file(daemon.directory.path + "/device-model.log")
        )
        defer { model.stop() }
        let home = ConsoleLayout.deviceModel(of: DomID(5), backend: .dom0)
        // libxl waits for this node; the handoff is written before it.
        #expect(try await eventually { try await store.readString(home + "/state") == "running" })
        #expect(try await store.readString(ConsoleLayout.consoleHandoff(of: DomID(5), backend: .dom0)) == "consoled")

        let client = try QMPClient(qmp)
        #expect(try client.next()["QMP"] != nil)
        #expect(try client.execute("qmp_capabilities")["return"] != nil)
        let status = try #require(try client.execute("query-status")["return"] as? [String: Any])
        #expect(status["status"] as? String == "running")
        let chardevs = try #require(try client.execute("query-chardev")["return"] as? [[String: Any]])
        #expect(chardevs.compactMap { $0["label"] as? String } == ["libxl-channel1", "libxl-channel2"])
        let unknown = try client.execute("device_add")
        #expect((unknown["error"] as? [String: Any])?["class"] as? String == "CommandNotFound")

        // libxl stops a device model with SIGHUP; it leaves no socket behind.
        model.signal(SIGHUP)
        #expect(model.wait(seconds: 30) == .exited(0))
        #expect(!FileManager.default.fileExists(atPath: qmp))
    }

    /// With `-S` the model reports `prelaunch` until QMP `cont`, and only then
    /// writes the `state` node.
    @Test func startStoppedRunsOnCont() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        let store = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { store.close() }
        let qmp = daemon.directory.path + "/qmp-libxl-6"
        let model = try TestProcess(
            try ConchExecutable.path(),
            [
                "device-model", "-xen-domid", "6", "-S", "-chardev",
                "socket,id=libxl-cmd,path=\(qmp),server=on,wait=off",
                "-mon", "chardev=libxl-cmd,mode=control", "-machine", "xenpv",
            ],
            environment: daemon.clientEnvironment
        )
        defer { model.stop() }
        let client = try await eventuallyConnect(qmp)
        #expect(try client.next()["QMP"] != nil)
        _ = try client.execute("qmp_capabilities")
        let handoff = ConsoleLayout.consoleHandoff(of: DomID(6), backend: .dom0)
        #expect(try await eventually { try await store.exists(handoff) })
        let before = try #require(try client.execute("query-status")["return"] as? [String: Any])
        #expect(before["status"] as? String == "prelaunch")
        let state = ConsoleLayout.deviceModel(of: DomID(6), backend: .dom0) + "/state"
        #expect(try await !store.exists(state))
        #expect(try client.execute("cont")["return"] != nil)
        let after = try #require(try client.execute("query-status")["return"] as? [String: Any])
        #expect(after["status"] as? String == "running")
        #expect(try await eventually { try await store.readString(state) == "running" })
    }

    /// libxl's only other possibility, an HVM guest, is refused with a reason.
    @Test func refusesAnHVMGuest() throws {
        let result = try ConchExecutable.run(["device-model", "-xen-domid", "4", "-machine", "xenfv"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("serves PV guests only"), "\(result.stderr)")
    }

    func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        for _ in 0..<3000 {
            if (try? await condition()) == true { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return try await condition()
    }

    func eventuallyConnect(_ path: String) async throws -> QMPClient {
        for _ in 0..<3000 {
            if let client = try? QMPClient(path) { return client }
            try await Task.sleep(for: .milliseconds(10))
        }
        return try QMPClient(path)
    }
}
