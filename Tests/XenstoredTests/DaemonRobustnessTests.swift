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
import XenstoreWire

/// Hostile and careless socket clients must not crash the daemon or disturb others.
@Suite("xenstored robustness")
struct DaemonRobustnessTests {
    /// A raw blocking Unix-socket connection for sending arbitrary bytes.
    final class RawConnection {
        let fd: Int32

        init(_ path: String) throws {
            fd = try UnixSocketPath.connect(path)
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit { close(fd) }

        func send(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        /// Reads until EOF or `count` bytes; returns what arrived.
        func receive(atMost count: Int) -> [UInt8] {
            var result: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while result.count < count {
                let got = recv(fd, &buffer, min(buffer.count, count - result.count), 0)
                if got <= 0 { break }
                result += buffer.prefix(got)
            }
            return result
        }
    }

    static func header(type: UInt32, length: UInt32) -> [UInt8] {
        XenstoreMessage(type: XenstoreMessageType(rawValue: type), reqID: 1, payload: []).encoded().prefix(12)
            + withUnsafeBytes(of: length.littleEndian, Array.init)
    }

    @Test func oversizeHeaderDropsOnlyThatConnection() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        let bystander = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { bystander.close() }
        let attacker = try RawConnection(daemon.socketPath)
        attacker.send(Self.header(type: 2, length: 4097))
        #expect(attacker.receive(atMost: 1).isEmpty, "the daemon closes a connection announcing > 4096 bytes")
        try await bystander.write("/local/still", "here")
        #expect(try await bystander.readString("/local/still") == "here")
    }

    @Test func garbageAndHalfHeadersDoNotHurtTheDaemon() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        var generator = SystemRandomNumberGenerator()
        for round in 0..<50 {
            let connection = try RawConnection(daemon.socketPath)
            let garbage = (0..<Int.random(in: 1...300, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
            connection.send(round % 2 == 0 ? garbage : Array(Self.header(type: 2, length: 100).prefix(7)))
        }
        // Unknown type with a valid header: an ENOSYS reply, and the connection stays usable.
        let polite = try RawConnection(daemon.socketPath)
        polite.send(XenstoreMessage(type: XenstoreMessageType(rawValue: 77), reqID: 9, payload: [0]).encoded())
        let reply = polite.receive(atMost: 16 + 7)
        #expect(Array(reply.dropFirst(16)) == Array("ENOSYS\0".utf8))
        #expect(reply.prefix(4) == [16, 0, 0, 0], "type ERROR")
        let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { client.close() }
        #expect(try await client.directory("/") == ["tool", "local"])
    }

    @Test func thousandsOfConnectDisconnectCycles() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        for index in 0..<3000 {
            let connection = try RawConnection(daemon.socketPath)
            if index % 3 == 0 {
                connection.send(
                    XenstoreMessage(type: .watch, reqID: 1, payload: XenstorePayload.strings(["/", "t"])).encoded()
                )
            }
        }
        let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { client.close() }
        try await client.write("/local/after", "cycles")
        #expect(try await client.readString("/local/after") == "cycles")
    }

    /// A client that floods requests and never reads replies stops being read;
    /// the daemon's memory stays bounded and others are served meanwhile.
    @Test func aClientThatNeverReadsIsThrottledNotFatal() async throws {
        let daemon = try XenstoredProcess()
        defer { daemon.stop() }
        let flooder = try RawConnection(daemon.socketPath)
        var nonBlocking = fcntl(flooder.fd, F_GETFL)
        nonBlocking |= O_NONBLOCK
        _ = fcntl(flooder.fd, F_SETFL, nonBlocking)
        let request = XenstoreMessage(type: .directory, reqID: 1, payload: XenstorePayload.string("/")).encoded()
        let burst = Array([[UInt8]](repeating: request, count: 1000).joined())
        var sent = 0
        for _ in 0..<200 {
            let wrote = burst.withUnsafeBytes {
                Foundation.send(flooder.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if wrote <= 0 { break }  // the daemon stopped reading us: backpressure works
            sent += wrote
        }
        #expect(sent < 200 * burst.count, "the daemon kept reading a client that never reads its replies")
        let client = try await XenstoreClient.connect(socketPath: daemon.socketPath)
        defer { client.close() }
        try await client.write("/local/served", "yes")
        #expect(try await client.readString("/local/served") == "yes")
    }

    @Test func runDirectoryGetsSocketAndPidFileAndLosesThemOnSigterm() throws {
        let daemon = try XenstoredProcess(useRunDirectory: true)
        let pidFile = daemon.directory.path + "/xenstored.pid"
        var mode = stat()
        #expect(stat(daemon.socketPath, &mode) == 0)
        #expect(mode.st_mode & 0o777 == 0o600, "the socket is created 0600")
        let pid = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(pid == String(daemon.process.pid))
        let directory = daemon.directory.path
        daemon.process.signal(SIGTERM)
        #expect(daemon.process.wait(seconds: 30) == .exited(0))
        #expect(!FileManager.default.fileExists(atPath: directory + "/xenstored.sock"))
        #expect(!FileManager.default.fileExists(atPath: pidFile))
        daemon.stop()
    }
}
