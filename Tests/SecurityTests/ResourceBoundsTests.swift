//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import SystemExtras
import Testing
import XenABI
import XenTestKit

@testable import XenSim

#if canImport(Glibc)
import Glibc
#endif

/// Everything a guest can make the host allocate is bounded.
@Suite("hostile guests: resource bounds")
struct ResourceBoundsTests {
    /// Event channels: `max_event_channels` (default 1023, as xl), counting the two
    /// the builder allocated (console, xenstore).
    @Test func eventChannelsPerDomain() async throws {
        let stack = try await Hostile.start(consoled: false)
        defer { stack.stop() }
        try await stack.create(try Hostile.testGuest("hog", "exhaust-ports"), guestKernel: false)
        try await stack.create(
            try Hostile.testGuest("small", "exhaust-ports", extra: "max_event_channels = 16"),
            guestKernel: false
        )
        #expect(
            try stack.host.eventually {
                stack.report("hog")["refusal"] != nil && stack.report("small")["refusal"] != nil
            }
        )
        #expect(stack.report("hog")["ports_allocated"] == "1021", "\(stack.report("hog"))")
        #expect(stack.report("hog")["refusal"]?.contains("max_event_channels") == true)
        #expect(stack.report("small")["ports_allocated"] == "14")
        // The hypervisor still serves: dom0 allocates and lists.
        #expect(try stack.host.privilegedHypervisor().listDomains().count == 2)
    }

    /// Grant mappings: `max_maptrack_frames` (512 mappings each); released mappings
    /// give the quota back.
    @Test func grantMappingsPerDomain() async throws {
        let stack = try await Hostile.start(consoled: false)
        defer { stack.stop() }
        try await stack.create(
            try Hostile.testGuest("mapper", "exhaust-maps", extra: "max_maptrack_frames = 1"),
            guestKernel: false
        )
        #expect(try stack.host.eventually { stack.report("mapper")["map_after_release"] != nil })
        let report = stack.report("mapper")
        #expect(report["maps_held"] == "512", "\(report)")
        #expect(report["refusal"]?.contains("max_maptrack_frames") == true)
        #expect(report["map_after_release"] == "true")
    }

    /// A guest allowed to use console_io cannot flood `conch dmesg`: its rate is
    /// bounded (what exceeds it is counted and marked) and so is its share of the ring.
    @Test func consoleIOFloodIsBoundedAndMarked() async throws {
        let stack = try await Hostile.start(consoled: false)
        defer { stack.stop() }
        try await stack.create(
            try Hostile.testGuest("calm", "console-io", extra: "conch_console_io = 1"),
            guestKernel: false
        )
        #expect(try stack.host.eventually { stack.report("calm")["console_io"] == "allowed" })
        let started = ContinuousClock.now
        try await stack.create(
            try Hostile.testGuest("noisy", "flood-console", ["2048"], extra: "conch_console_io = 1"),
            guestKernel: false
        )
        #expect(try stack.host.eventually { stack.report("noisy")["flooded"] != nil })
        let dmesg = String(decoding: try stack.host.privilegedHypervisor().readConsole(clear: false), as: UTF8.self)
        // What the domain may have written: the 64 KiB burst plus 16 KiB per second
        // it was running (the test's clock bounds that from above), one line more.
        let seconds = started.duration(to: .now).components.seconds + 1
        let allowed = (64 + 16 * Int(seconds)) * 1024 + 1030
        let noisyBytes = dmesg.split(separator: "\n").filter { $0.hasPrefix("(d2) ") }.reduce(0) { $0 + $1.count + 1 }
        #expect(
            noisyBytes <= allowed,
            "a 2 MiB flood kept \(noisyBytes) bytes in \(seconds) s: \(dmesg.split(separator: "\n").map { $0.prefix(60) })"
        )
        #expect(noisyBytes < 2048 * 1024 / 2, "most of the flood was dropped")
        #expect(dmesg.contains("(d1) console_io from d1"), "the other domain's line survived")
        #expect(
            try stack.host.eventually {
                String(decoding: try stack.host.privilegedHypervisor().readConsole(clear: false), as: UTF8.self)
                    .contains("bytes dropped by the console_io rate limit]")
            },
            "the drop is marked once the guest writes again"
        )
    }

    /// Each domain's lines fill at most its share of the ring: a flood evicts the
    /// flooder's own oldest lines, not everyone else's.
    @Test func aDomainsShareOfTheConsoleRing() {
        var log = HypervisorDmesg(limits: .init(capacity: 64 * 1024, share: 16 * 1024, rate: .unlimited))
        for index in 0..<10 { log.write(Array("quiet \(index)\n".utf8), from: DomID(1), now: 0) }
        for _ in 0..<1000 { log.write(Array((String(repeating: "x", count: 200) + "\n").utf8), from: DomID(2), now: 0) }
        let text = String(decoding: log.bytes, as: UTF8.self)
        #expect((0..<10).allSatisfy { text.contains("(d1) quiet \($0)\n") })
        let flooder = text.split(separator: "\n").filter { $0.hasPrefix("(d2) ") }.reduce(0) { $0 + $1.count + 1 }
        #expect(flooder <= 16 * 1024 && flooder > 15 * 1024, "\(flooder)")
        #expect(log.bytes.count <= 64 * 1024)
    }

    /// Writes pass whole or not at all; what is dropped is counted and marked once
    /// the domain gets through again; a flood keeps no more than burst + rate · t.
    @Test func theRateLimitCountsWhatItDrops() {
        var log = HypervisorDmesg(limits: .init(capacity: 1 << 20, rate: .init(rate: 1000, burst: 1000)))
        log.write(Array((String(repeating: "a", count: 599) + "\n").utf8), from: DomID(3), now: 0)
        log.write(Array((String(repeating: "b", count: 499) + "\n").utf8), from: DomID(3), now: 0)
        #expect(log.rateDropped[DomID(3)] == 500)
        log.write(Array("later\n".utf8), from: DomID(3), now: 1_000_000_000)
        let text = String(decoding: log.bytes, as: UTF8.self)
        #expect(text.hasPrefix("(d3) " + String(repeating: "a", count: 599) + "\n"))
        #expect(!text.contains("bbbb"))
        #expect(text.contains("(d3) [conch: 500 bytes dropped by the console_io rate limit]\n(d3) later\n"))

        var flooded = HypervisorDmesg(limits: .init(capacity: 1 << 20, rate: .init(rate: 16 << 10, burst: 64 << 10)))
        let line = Array(String(repeating: "F", count: 1023).utf8) + [10]
        for step in 0..<2048 { flooded.write(line, from: DomID(2), now: UInt64(step) * 400_000) }
        // 0.82 s: 64 KiB of burst and about 13 KiB of rate, in whole lines, plus their markers.
        let kept = String(decoding: flooded.bytes, as: UTF8.self).split(separator: "\n")
        let lines = kept.filter { $0.hasSuffix("FFFF") }.count
        #expect(lines >= 64 && lines <= 64 + 14, "\(lines) lines")
        #expect(kept.count - lines <= 14, "markers: \(kept.count - lines)")
    }

    /// Out of descriptors, a daemon stops accepting for a while instead of spinning
    /// on a listener that stays readable.
    @Test(arguments: ["hypervisor", "xenstored"])
    func runningOutOfDescriptorsDoesNotSpin(_ daemon: String) throws {
        let scratch = try ScratchDirectory(prefix: "conch-emfile")
        defer { scratch.remove() }
        let socket = scratch.path + (daemon == "hypervisor" ? "/hypervisor.sock" : "/xenstored.sock")
        let process = try TestProcess(
            "/usr/bin/prlimit",
            ["--nofile=48:48", try ConchExecutable.path(), daemon, "--run-dir", scratch.path]
        )
        defer { process.stop() }
        var ready = false
        for _ in 0..<500 where !ready {
            ready = UnixSocketPath.isListening(socket)
            usleep(10_000)
        }
        #expect(ready, "\(daemon) did not start")
        let type = daemon == "hypervisor" ? Int32(SOCK_SEQPACKET.rawValue) : Int32(SOCK_STREAM.rawValue)
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        // Non-blocking connects: a full backlog answers EAGAIN instead of waiting.
        var address = try UnixSocketPath.address(socket)
        for _ in 0..<200 {
            let fd = Glibc.socket(AF_UNIX, type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            held.append(fd)
            if connected != 0 { break }
        }
        // The daemon now has connections waiting it cannot accept.
        usleep(300_000)
        let before = cpuTicks(process.pid)
        usleep(1_000_000)
        let used = cpuTicks(process.pid) - before
        // A spinning daemon burns ~100 ticks a second; an idle one about 0.
        #expect(used < 30, "\(daemon) used \(used) of 100 CPU ticks while out of descriptors")
        #expect(process.isRunning)
    }

    private func cpuTicks(_ pid: Int32) -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // utime and stime are fields 14 and 15; after "pid (comm)" they are 12th and 13th.
        return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
    }
}
