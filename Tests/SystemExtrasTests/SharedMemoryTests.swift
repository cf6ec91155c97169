//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemPackage
import Testing
import XenMemory

@testable import SystemExtras

#if canImport(Glibc)
import Glibc
#endif

@Suite("memfd pages, eventfds and descriptor passing")
struct SharedMemoryTests {
    @Test func twoMappingsOfAMemfdShareBytes() throws {
        let file = try SharedMemoryFile(pageCount: 3)
        let whole = try file.map(pageOffset: 0, pageCount: 3)
        let second = try file.map(pageOffset: 1)
        second.write([1, 2, 3], at: 10)
        #expect(whole.bytes(at: 4096 + 10, count: 3) == [1, 2, 3])
        whole.store32(0xdead_beef, at: 4096 + 100, ordering: .releasing)
        #expect(second.load32(at: 100, ordering: .acquiring) == 0xdead_beef)
        #expect(throws: Errno.invalidArgument) { try file.map(pageOffset: 3) }
    }

    @Test func memfdSizeIsSealed() throws {
        let file = try SharedMemoryFile(pageCount: 1)
        #expect(ftruncate(file.fileDescriptor.rawValue, 0) == -1, "a sealed memfd must refuse to shrink")
        #expect(errno == EPERM)
    }

    @Test func readOnlyMappingIsReadOnly() throws {
        let file = try SharedMemoryFile(pageCount: 1)
        let writer = try file.map()
        let reader = try file.map(writable: false)
        writer.write([42], at: 0)
        #expect(reader.bytes(at: 0, count: 1) == [42])
        #expect(!reader.isWritable)
    }

    @Test func descriptorsTravelOverUnixSockets() throws {
        let (left, right) = try UnixSocket.pair()
        let file = try SharedMemoryFile(pageCount: 1)
        let event = try EventNotifier()
        try left.send(Array("page".utf8), descriptors: [file.fileDescriptor, event.fileDescriptor])
        let (bytes, descriptors) = try right.receiveExactly(4)
        #expect(bytes == Array("page".utf8))
        try #require(descriptors.count == 2)
        #expect(descriptors[0].rawValue != file.fileDescriptor.rawValue, "a received fd is a new number")
        let received = try SharedMemoryFile(adopting: descriptors[0])
        let mapping = try received.map()
        try file.map().write(Array("hello".utf8), at: 0)
        #expect(mapping.bytes(at: 0, count: 5) == Array("hello".utf8))
        let receivedEvent = EventNotifier(adopting: descriptors[1])
        try event.signal()
        #expect(try receivedEvent.wait(timeoutMilliseconds: 10_000) == 1)
        let credentials = try right.peerCredentials()
        #expect(credentials.pid == getpid())
    }

    @Test func eventfdSignalsCoalesce() throws {
        let event = try EventNotifier()
        #expect(try event.tryConsume() == nil)
        #expect(try event.wait(timeoutMilliseconds: 0) == nil)
        for _ in 0..<5 { try event.signal() }
        #expect(try event.wait() == 5, "five signals, one wake-up carrying the count")
        #expect(try event.tryConsume() == nil)
    }

    @Test func childProcessesReportHowTheyEnded() throws {
        let exits = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "exit 3"])
        #expect(try exits.wait() == .exited(3))
        let sleeper = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "sleep 30"])
        #expect(try sleeper.poll() == nil)
        sleeper.kill(SIGKILL)
        #expect(try sleeper.wait() == .signalled(SIGKILL))
    }

    @Test func childGetsTheDescriptorAtTheChosenNumber() throws {
        let (parent, child) = try UnixSocket.pair()
        let process = try ChildProcess(
            executable: "/bin/sh",
            arguments: ["-c", "echo through-fd-3 >&3"],
            descriptors: [3: child.fileDescriptor]
        )
        #expect(try process.wait() == .exited(0))
        #expect(try parent.receive(maxBytes: 64).bytes == Array("through-fd-3\n".utf8))
    }
}

@Suite("JSON log lines")
struct JSONLogHandlerTests {
    @Test func aLineIsOneSortedJSONObjectWhateverTheMessageHolds() throws {
        let line = JSONLogHandler.line(
            timestamp: Date(timeIntervalSince1970: 0),
            label: "conch.consoled",
            level: .warning,
            message: "quote \" newline \n and tab \t in /local/domain/1",
            metadata: ["domid": "1", "path": "/a/b"],
            source: "ConsoleBackend"
        )
        #expect(!line.contains("\n"), "one line: \(line)")
        #expect(line.hasPrefix(#"{"label":"conch.consoled","level":"warning","message":"#), "\(line)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["message"] as? String == "quote \" newline \n and tab \t in /local/domain/1")
        #expect(object["metadata"] as? [String: String] == ["domid": "1", "path": "/a/b"])
        #expect(object["timestamp"] as? String == "1970-01-01T00:00:00.000Z")
    }
}

@Suite("one session per console")
struct ConsoleSessionLockTests {
    @Test func aSessionCannotSlipInWhileATakerWaitsForTheLock() throws {
        let directory = try RunDirectory.makeTemporary(prefix: "conch-lock")
        defer { try? FileManager.default.removeItem(atPath: directory.path) }
        let path = ConsoleSessionLock.path(runDirectory: directory, domid: 1, devid: 0)
        func claim(force: Bool = false) throws -> ConsoleSessionLock {
            try ConsoleSessionLock.acquire(path: path, force: force, what: "console 0 of d1", takeOver: "take it over")
        }
        let first = try claim()
        #expect(throws: ConsoleSessionLock.Refused.self) { try claim() }
        // A taker asked for the console and waits; the holder lets go. The lock is free,
        // but a session that did not ask to take over must not get in ahead of the taker.
        let taker = try ChildProcess(executable: "/bin/sleep", arguments: ["30"])
        try PidFile(path: path + ".takeover").write(pid: taker.pid)
        #expect(first.takeoverRequested)
        first.release()
        do {
            _ = try claim()
            Issue.record("a session slipped in while a taker waited")
        } catch let refused as ConsoleSessionLock.Refused {
            #expect(refused.busy && refused.description.contains("pid \(taker.pid)"), "\(refused)")
        }
        // A taker that died leaves its request behind: it no longer counts, and goes.
        taker.kill(SIGKILL)
        _ = try taker.wait()
        let second = try claim()
        #expect(!second.takeoverRequested, "a dead taker's request would end the new session")
        second.release()
    }
}
