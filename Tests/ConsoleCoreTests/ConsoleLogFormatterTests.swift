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

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
private let t1 = LogTimestamp(year: 2026, month: 8, day: 1, hour: 9, minute: 5, second: 7)
private let t2 = LogTimestamp(year: 2026, month: 12, day: 31, hour: 23, minute: 59, second: 59)
private let p1 = "[2026-08-01 09:05:07] "
private let p2 = "[2026-12-31 23:59:59] "

@Suite("ConsoleLogFormatter")
struct ConsoleLogFormatterTests {
    @Test func prefixFormat() {
        #expect(t1.prefix == p1)
        #expect(
            LogTimestamp(year: 12, month: 1, day: 2, hour: 3, minute: 4, second: 5).prefix == "[0012-01-02 03:04:05] "
        )
        #expect(
            LogTimestamp(year: 12345, month: 99, day: 0, hour: -1, minute: 60, second: 61).prefix
                == "[12345-99-00 -01:60:61] "
        )
    }

    /// The worked example in the type's documentation.
    @Test func documentedWorkedExample() {
        var formatter = ConsoleLogFormatter(timestamps: true)
        #expect(formatter.format(bytes("boot"), at: t1) == bytes(p1 + "boot"))
        #expect(formatter.format(bytes("ing\n\rok\n"), at: t1) == bytes("ing\n" + p1 + "ok\n"))
        #expect(formatter.isAtLineStart)
    }

    @Test func eachLineGetsTheTimestampOfTheCallWhereItStarts() {
        var formatter = ConsoleLogFormatter(timestamps: true)
        #expect(formatter.format(bytes("a\nb"), at: t1) == bytes(p1 + "a\n" + p1 + "b"))
        #expect(formatter.format(bytes("c\n"), at: t2) == bytes("c\n"))
        #expect(formatter.format(bytes("d\n"), at: t2) == bytes(p2 + "d\n"))
        #expect(formatter.format([], at: t2).isEmpty)
    }

    @Test func carriageReturnRules() {
        var formatter = ConsoleLogFormatter(timestamps: true)
        // CR LF endings are kept; one CR after LF is dropped; a second one is content.
        #expect(formatter.format(bytes("a\r\nb\n\r\rc"), at: t1) == bytes(p1 + "a\r\n" + p1 + "b\n" + p1 + "\rc"))
        // A CR arriving in the call after its LF is still dropped.
        var split = ConsoleLogFormatter(timestamps: true)
        #expect(split.format(bytes("x\n"), at: t1) == bytes(p1 + "x\n"))
        #expect(split.format(bytes("\ry"), at: t1) == bytes(p1 + "y"))
        // Only directly after LF: a CR later in a line stays.
        #expect(split.format(bytes("\rz"), at: t1) == bytes("\rz"))
    }

    @Test func withoutTimestampsTheLogIsTheOutput() {
        var formatter = ConsoleLogFormatter()
        let output = bytes("a\n\rb\r\n") + [0x1b, 0x5b, 0x41]
        #expect(formatter.format(output, at: t1) == output)
        #expect(formatter.fileOpened(at: t1).isEmpty)
    }

    @Test func replaceEscape() {
        var plain = ConsoleLogFormatter(replaceEscape: true)
        #expect(plain.format([0x1b, 0x5b, 0x41], at: t1) == bytes(".[A"))
        var stamped = ConsoleLogFormatter(timestamps: true, replaceEscape: true)
        #expect(stamped.format([0x1b, 0x0a], at: t1) == bytes(p1 + ".\n"))
    }

    @Test func fileOpenedLineAndMidLineReopen() {
        var formatter = ConsoleLogFormatter(timestamps: true)
        #expect(formatter.fileOpened(at: t1) == bytes(p1 + "Logfile Opened\n"))
        #expect(formatter.format(bytes("half"), at: t1) == bytes(p1 + "half"))
        // SIGHUP or rotation while the guest is mid-line: the new file's copy of the
        // rest of the line gets its own prefix.
        #expect(formatter.fileOpened(at: t2) == bytes(p2 + "Logfile Opened\n"))
        #expect(formatter.format(bytes(" line\n"), at: t2) == bytes(p2 + " line\n"))
    }

    /// Formatting a stream in any split equals formatting it whole (constant time).
    @Test func randomSplitsEqualTheWholeStream() async {
        let alphabet = bytes("ab\r\n\r\n\u{1b}")
        let byte = Gen.int(in: 0...alphabet.count - 1).map { alphabet[$0] }
        await propertyCheck(
            count: 300,
            input: byte.array(of: 0...200),
            Gen.int(in: 1...20).array(of: 1...60),
            Gen.bool(),
            Gen.bool()
        ) { stream, cuts, timestamps, replaceEscape in
            var whole = ConsoleLogFormatter(timestamps: timestamps, replaceEscape: replaceEscape)
            let expected = whole.format(stream, at: t1)
            var pieces = ConsoleLogFormatter(timestamps: timestamps, replaceEscape: replaceEscape)
            var output: [UInt8] = []
            var rest = stream[...]
            var index = 0
            while !rest.isEmpty {
                let size = cuts[index % cuts.count]
                output += pieces.format(rest.prefix(size), at: t1)
                rest = rest.dropFirst(size)
                index += 1
            }
            #expect(output == expected)
            #expect(pieces.isAtLineStart == whole.isAtLineStart)
        }
    }

    /// Removing the prefixes gives back the output minus exactly the CRs that follow an
    /// LF, and there is one prefix per line started.
    @Test func prefixesAreTheOnlyAddition() async {
        let alphabet = bytes("q\r\n")
        let byte = Gen.int(in: 0...2).map { alphabet[$0] }
        await propertyCheck(count: 300, input: byte.array(of: 0...120)) { stream in
            var formatter = ConsoleLogFormatter(timestamps: true)
            let log = formatter.format(stream, at: t1)
            let prefix = bytes(p1)
            var stripped: [UInt8] = []
            var prefixes = 0
            var index = 0
            while index < log.count {
                if log[index...].starts(with: prefix) {
                    prefixes += 1
                    index += prefix.count
                } else {
                    stripped.append(log[index])
                    index += 1
                }
            }
            var expected: [UInt8] = []
            var previous: UInt8?
            for byte in stream {
                if !(byte == 0x0d && previous == 0x0a) { expected.append(byte) }
                previous = byte == 0x0d && previous == 0x0a ? nil : byte
            }
            #expect(stripped == expected)
            let lines = expected.isEmpty ? 0 : expected.split(separator: 0x0a, omittingEmptySubsequences: false).count
            let trailing = expected.last == 0x0a ? 1 : 0
            #expect(prefixes == lines - trailing)
        }
    }
}

@Suite("LogRotationPolicy")
struct LogRotationPolicyTests {
    /// The worked example in the type's documentation.
    @Test func documentedWorkedExample() {
        let policy = LogRotationPolicy(maxBytes: 1000, backups: 2)
        #expect(!policy.shouldRotate(currentSize: 900, incoming: 100))
        #expect(policy.shouldRotate(currentSize: 900, incoming: 101))
        #expect(
            policy.plan(for: "guest-web.log") == [
                .remove("guest-web.log.2"),
                .rename(from: "guest-web.log.1", to: "guest-web.log.2"),
                .rename(from: "guest-web.log", to: "guest-web.log.1"),
            ]
        )
    }

    @Test func backupCounts() {
        #expect(LogRotationPolicy(maxBytes: 10, backups: 0).plan(for: "g.log") == [.remove("g.log")])
        #expect(LogRotationPolicy(maxBytes: 10, backups: -4).backups == 0)
        #expect(
            LogRotationPolicy(maxBytes: 10, backups: 1).plan(for: "g.log") == [
                .remove("g.log.1"), .rename(from: "g.log", to: "g.log.1"),
            ]
        )
        let many = LogRotationPolicy(maxBytes: 10, backups: .max)
        #expect(many.backups == LogRotationPolicy.maximumBackups)
        #expect(many.plan(for: "g").count == LogRotationPolicy.maximumBackups + 1)
    }

    /// Plans are well formed for any backup count: the oldest goes first, every
    /// rename moves `.k` to `.k+1` from the oldest down, and the live file ends at `.1`.
    @Test(arguments: 1...12)
    func planShape(backups: Int) {
        let plan = LogRotationPolicy(maxBytes: 1, backups: backups).plan(for: "L")
        #expect(plan.first == .remove("L.\(backups)"))
        #expect(plan.last == .rename(from: "L", to: "L.1"))
        for (offset, step) in plan.dropFirst().dropLast().enumerated() {
            let k = backups - 1 - offset
            #expect(step == .rename(from: "L.\(k)", to: "L.\(k + 1)"))
        }
        #expect(plan.count == backups + 1)
    }

    @Test func rotationEdgeCases() {
        let policy = LogRotationPolicy(maxBytes: 100, backups: 3)
        #expect(!policy.shouldRotate(currentSize: 0, incoming: 10_000), "an empty file takes any write")
        #expect(!policy.shouldRotate(currentSize: 500, incoming: 0))
        #expect(!policy.shouldRotate(currentSize: 500, incoming: -1))
        #expect(policy.shouldRotate(currentSize: .max, incoming: .max))
        #expect(!LogRotationPolicy.disabled.shouldRotate(currentSize: .max, incoming: 1))
    }

    @Test func logFileNames() {
        #expect(ConsoleLogName.fileName(domainName: "web") == "guest-web.log")
        #expect(ConsoleLogName.fileName(domainName: "web", suffix: "-agent") == "guest-web-agent.log")
        #expect(ConsoleLogName.fileName(domainName: "") == nil)
        #expect(ConsoleLogName.fileName(domainName: "../../etc/x\0y") == "guest-.._.._etc_x_y.log")
    }
}
