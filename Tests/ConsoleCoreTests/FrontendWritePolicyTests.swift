//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import PropertyBased
import Testing
import XenABI

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite("FrontendWritePolicy and FrontendConsole")
struct FrontendWritePolicyTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var mode: FrontendMode
        var flag: UInt8
        var free: Int?
        var pending: Int
        var expected: FrontendWriteAction
        var testDescription: String {
            "\(mode) flag=\(flag) free=\(free.map(String.init) ?? "invalid") pending=\(pending)"
        }
    }

    /// The documented table.
    @Test(arguments: [
        Row(mode: .flagAware, flag: 1, free: 2048, pending: 10, expected: .hypervisorConsole),
        Row(mode: .flagAware, flag: 1, free: nil, pending: 10, expected: .hypervisorConsole),
        Row(mode: .flagAware, flag: 0, free: nil, pending: 10, expected: .hypervisorConsole),
        Row(mode: .flagAware, flag: 0, free: 0, pending: 10, expected: .waitForSpace),
        Row(mode: .flagAware, flag: 0, free: 4, pending: 10, expected: .ring(count: 4)),
        Row(mode: .flagAware, flag: 0, free: 2048, pending: 10, expected: .ring(count: 10)),
        Row(mode: .flagAware, flag: 2, free: 2048, pending: 10, expected: .ring(count: 10)),  // garbage = connected
        Row(mode: .flagAware, flag: 1, free: 2048, pending: 0, expected: .done),
        Row(mode: .legacy, flag: 1, free: 2048, pending: 10, expected: .ring(count: 10)),
        Row(mode: .legacy, flag: 1, free: 0, pending: 10, expected: .yieldAndRetry),
        Row(mode: .legacy, flag: 0, free: nil, pending: 10, expected: .discard),
        Row(mode: .legacy, flag: 0, free: 3, pending: 10, expected: .ring(count: 3)),
        Row(mode: .legacy, flag: 0, free: 3, pending: 0, expected: .done),
        Row(mode: .dropWhileDisconnected, flag: 1, free: 2048, pending: 10, expected: .discard),
        Row(mode: .dropWhileDisconnected, flag: 1, free: nil, pending: 10, expected: .discard),
        Row(mode: .dropWhileDisconnected, flag: 0, free: nil, pending: 10, expected: .discard),
        Row(mode: .dropWhileDisconnected, flag: 0, free: 0, pending: 10, expected: .yieldAndRetry),
        Row(mode: .dropWhileDisconnected, flag: 0, free: 4, pending: 10, expected: .ring(count: 4)),
        Row(mode: .dropWhileDisconnected, flag: 2, free: 2048, pending: 10, expected: .ring(count: 10)),
        Row(mode: .dropWhileDisconnected, flag: 1, free: 2048, pending: 0, expected: .done),
    ])
    func policyTable(row: Row) {
        let action = FrontendWritePolicy.action(
            mode: row.mode,
            flag: ConsoleConnection(rawValue: row.flag),
            freeSpace: row.free,
            pending: row.pending
        )
        #expect(action == row.expected)
    }

    /// The worked example in ``FrontendConsole``'s documentation.
    @Test func replayOnConnectPrecedesNewOutput() {
        var core = FrontendConsole(mode: .flagAware)
        #expect(core.nextAction(pending: bytes("boot\n"), flag: .disconnected, freeSpace: 2048) == .hypervisorConsole)
        #expect(core.history.retained == bytes("boot\n"))
        let marker = bytes("[conch: replaying 5 bytes written while the console was disconnected]\r\n")
        #expect(
            core.nextAction(pending: bytes("login: "), flag: .connected, freeSpace: 2048)
                == .replay(marker + bytes("boot\n"))
        )
        #expect(!core.isReplaying)
        #expect(core.history.isEmpty)
        #expect(core.nextAction(pending: bytes("login: "), flag: .connected, freeSpace: 2048 - 80) == .ring(count: 7))
    }

    @Test func replayIsChunkedToTheFreeSpaceAndWaitsWhenFull() {
        var core = FrontendConsole(mode: .flagAware)
        _ = core.nextAction(pending: bytes("0123456789"), flag: .disconnected, freeSpace: 0)
        let full = core.history.replayMarker() + bytes("0123456789")
        var replayed: [UInt8] = []
        #expect(core.nextAction(pending: bytes("x"), flag: .connected, freeSpace: 0) == .waitForSpace)
        while case .replay(let chunk) = core.nextAction(pending: bytes("x"), flag: .connected, freeSpace: 16) {
            #expect(chunk.count <= 16)
            replayed += chunk
        }
        #expect(replayed == full)
        #expect(core.nextAction(pending: bytes("x"), flag: .connected, freeSpace: 16) == .ring(count: 1))
    }

    /// A flush with nothing pending still replays, and then reports done.
    @Test func flushWithNothingPending() {
        var core = FrontendConsole(mode: .flagAware)
        #expect(core.nextAction(pending: [UInt8](), flag: .disconnected, freeSpace: 100) == .done)
        _ = core.nextAction(pending: bytes("a"), flag: .disconnected, freeSpace: 100)
        guard case .replay = core.nextAction(pending: [UInt8](), flag: .connected, freeSpace: 100) else {
            Issue.record("expected a replay")
            return
        }
        #expect(core.nextAction(pending: [UInt8](), flag: .connected, freeSpace: 100) == .done)
    }

    /// The backend goes away half-way through a replay: the history bytes not yet in
    /// the ring stay, new output joins them, and the next connect replays exactly the
    /// rest under a new marker.
    @Test func interruptedReplayResumesWithoutRepeatsOrLoss() {
        var core = FrontendConsole(mode: .flagAware)
        _ = core.nextAction(pending: bytes("ABCDEFGHIJ"), flag: .disconnected, freeSpace: 2048)
        let marker = core.history.replayMarker()
        guard
            case .replay(let first) = core.nextAction(pending: [UInt8](), flag: .connected, freeSpace: marker.count + 4)
        else {
            Issue.record("expected a replay")
            return
        }
        #expect(first == marker + bytes("ABCD"))
        #expect(core.isReplaying)
        #expect(core.nextAction(pending: bytes("kl"), flag: .disconnected, freeSpace: 2048) == .hypervisorConsole)
        #expect(!core.isReplaying)
        #expect(core.history.retained == bytes("EFGHIJkl"))
        let secondMarker = bytes("[conch: replaying 8 bytes written while the console was disconnected]\r\n")
        #expect(
            core.nextAction(pending: [UInt8](), flag: .connected, freeSpace: 2048)
                == .replay(secondMarker + bytes("EFGHIJkl"))
        )
    }

    @Test func droppedBootBytesAreAnnouncedOnce() {
        var core = FrontendConsole(mode: .flagAware, historyCapacity: 4)
        _ = core.nextAction(pending: bytes("abcdef"), flag: .disconnected, freeSpace: 2048)
        let expectedMarker = bytes(
            "[conch: replaying 4 bytes written while the console was disconnected; 2 earlier bytes dropped]\r\n"
        )
        #expect(
            core.nextAction(pending: [UInt8](), flag: .connected, freeSpace: 2048)
                == .replay(expectedMarker + bytes("cdef"))
        )
        #expect(core.history.droppedBytes == 0)
        #expect(core.nextAction(pending: [UInt8](), flag: .connected, freeSpace: 2048) == .done)
    }

    @Test func invalidRingWhileConnectedGoesToTheHypervisorAndIsReplayedLater() {
        var core = FrontendConsole(mode: .flagAware)
        #expect(core.nextAction(pending: bytes("oops"), flag: .connected, freeSpace: nil) == .hypervisorConsole)
        guard case .replay(let bytesOut) = core.nextAction(pending: [UInt8](), flag: .connected, freeSpace: 2048) else {
            Issue.record("expected a replay once the ring is valid again")
            return
        }
        #expect(bytesOut.suffix(4) == bytes("oops"))
    }

    @Test func legacyModeIgnoresTheFlagAndKeepsNoHistory() {
        var core = FrontendConsole(mode: .legacy)
        #expect(core.nextAction(pending: bytes("abc"), flag: .disconnected, freeSpace: 2048) == .ring(count: 3))
        #expect(core.nextAction(pending: bytes("abc"), flag: .disconnected, freeSpace: 0) == .yieldAndRetry)
        #expect(core.history.isEmpty)
    }

    /// Whatever the flag does and however much space there is, a flag-aware frontend
    /// with a large enough history gets every byte into the ring exactly once and in
    /// order, once the backend is finally connected. Output bytes are ≥ 0x80, so the
    /// ASCII marker lines can be filtered out of the ring stream.
    @Test func everyByteReachesTheRingOnceAndInOrder() async {
        await propertyCheck(
            count: 200,
            input: Gen.int(in: 1...40).array(of: 1...30),
            Gen.bool(0.4).array(of: 1...50),
            Gen.int(in: -1...300).array(of: 1...50)
        ) { writes, disconnectedFlags, spaces in
            var core = FrontendConsole(mode: .flagAware)
            var next = 0
            var ringStream: [UInt8] = []
            var expected: [UInt8] = []
            var tick = 0
            func state() -> (ConsoleConnection, Int?) {
                defer { tick += 1 }
                let space = spaces[tick % spaces.count]
                return (
                    disconnectedFlags[tick % disconnectedFlags.count] ? .disconnected : .connected,
                    space < 0 ? nil : space
                )
            }
            for size in writes {
                var pending = (0..<size).map { _ in
                    defer { next += 1 }
                    return UInt8(0x80 + next % 0x80)
                }
                expected += pending
                var attempts = 0
                while attempts < 20 {
                    attempts += 1
                    let (flag, space) = state()
                    switch core.nextAction(pending: pending, flag: flag, freeSpace: space) {
                    case .hypervisorConsole: pending = []
                    case .ring(let count):
                        ringStream += pending.prefix(count)
                        pending.removeFirst(count)
                    case .replay(let chunk):
                        #expect(chunk.count <= space ?? 0)
                        ringStream += chunk
                    case .waitForSpace, .yieldAndRetry: break
                    case .discard: Issue.record("flag-aware mode never discards")
                    case .done: break
                    }
                    if pending.isEmpty { break }
                }
                // A write that never found space: connect and drain it.
                while !pending.isEmpty {
                    switch core.nextAction(pending: pending, flag: .connected, freeSpace: 64) {
                    case .ring(let count):
                        ringStream += pending.prefix(count)
                        pending.removeFirst(count)
                    case .replay(let chunk): ringStream += chunk
                    default: Issue.record("a connected frontend with space must make progress")
                    }
                }
            }
            while case .replay(let chunk) = core.nextAction(pending: [UInt8](), flag: .connected, freeSpace: 64) {
                ringStream += chunk
            }
            #expect(ringStream.filter { $0 >= 0x80 } == expected)
        }
    }
}
