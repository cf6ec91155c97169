//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import HostSupervision
import SystemExtras
import Toolstack
import ToolstackRuntime
import XenABI
import XenRing

#if canImport(Glibc)
import Glibc
#endif

/// The demo's output: one unbuffered stream, so progress shows while it runs,
/// in order, even through a pipe.
/// Writes to stdout, and goes on if nobody reads any more (`conch demo | head`):
/// the demo still tears down what it started. (FileHandle's write traps on EPIPE.)
func out(_ text: String, terminator: String = "\n") {
    _ = writeAll(STDOUT_FILENO, Array((text + terminator).utf8)[...])
}

struct DemoFailure: Error, CustomStringConvertible {
    let description: String
}

/// The tour `conch demo` runs (see its help): every step checked, everything it
/// started cleaned up.
public final class DemoRunner {
    let runDirectory: RunDirectory
    /// What the host shares with web-1: guests cannot see the run directory, but
    /// they may write to /tmp, so a world-writable (sticky) directory there.
    let share: RunDirectory
    let supervisor: HostSupervisor
    let keep: Bool
    /// Keep the stack and the web console up at the end until Enter (`--web`).
    let serveWeb: Bool
    let started = ContinuousClock.now
    var host: HostConnection?
    var timings: [(String, String)] = []
    /// `conch web`, from the last step until the clean-up.
    var webConsole: ChildProcess?

    public init(keep: Bool, serveWeb: Bool = false) throws {
        runDirectory = try RunDirectory.makeTemporary(prefix: "conch-demo")
        share = try RunDirectory.makeTemporary(prefix: "conch-demo-share")
        chmod(share.path, 0o1777)
        supervisor = HostSupervisor(runDirectory: runDirectory, configuration: .quiet)
        self.keep = keep
        self.serveWeb = serveWeb
    }

    public func say(_ line: String) {
        let elapsed = started.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        out(String(format: "[%5.1fs] ", seconds) + line)
    }

    func step(_ title: String) { out("\n==> \(title)") }

    func check(_ condition: Bool, _ what: String) throws {
        guard condition else { throw DemoFailure(description: what) }
    }

    public func cleanUp() {
        if let webConsole {
            webConsole.kill(SIGTERM)
            _ = try? webConsole.wait()
        }
        if let host {
            for domain in (try? host.hypervisor.listDomains()) ?? [] { try? host.hypervisor.destroy(domain.domid) }
            host.store.close()
        }
        supervisor.stopAll()
        if keep {
            out("\nKept \(runDirectory) (configs in it, logs in \(runDirectory.logDirectory)) and \(share).")
        } else {
            try? FileManager.default.removeItem(atPath: runDirectory.path)
            try? FileManager.default.removeItem(atPath: share.path)
        }
    }

    /// Milliseconds since `start`.
    func milliseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = start.duration(to: .now)
        return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }

    public func run() async throws {
        let examples = try Self.findExamples()
        out("Conch demo — run directory \(runDirectory)")

        step("Start the host stack: hypervisor, xenstored, consoled")
        var clock = ContinuousClock.now
        try supervisor.start(["hypervisor", "xenstored", "consoled"])
        timings.append(("host stack up", String(format: "%.0f ms", milliseconds(since: clock))))
        say("up: \(supervisor.isRunning.joined(separator: ", ")) (logs in \(runDirectory.logDirectory))")
        let host = try await HostConnection.open(runDirectory)
        self.host = host

        step("Write two guest configurations")
        let dir = runDirectory.path
        let web = """
            # web-1: runs the provisioning agent from examples/provisioning.
            name = "web-1"
            kernel = "\(examples)/guest-agent.py"
            extra = "\(share)/web-1-root"
            channel = [
                "name=org.conch.provision.0, connection=socket, path=\(dir)/web-1.provision.sock",
                "name=org.conch.log.0, connection=pty",
            ]

            """
        let db = """
            # db-1: a shell that answers every line on its channel.
            name = "db-1"
            kernel = "/bin/sh"
            extra = "-c 'echo db-1 up; c=$CONCH_GUEST_DEV/xen-channel/org.conch.ping.0; \
            while IFS= read -r line; do echo \\"pong: $line\\"; [ \\"$line\\" = bye ] && break; done <$c >$c; echo db-1 done'"
            channel = [ "name=org.conch.ping.0, connection=socket, path=\(dir)/db-1.ping.sock" ]

            """
        for (name, text) in [("web-1.cfg", web), ("db-1.cfg", db)] {
            try text.write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8)
            out("--- \(dir)/\(name)")
            out(text, terminator: "")
        }

        step("Create both (each waits for consoled before it is unpaused)")
        var domids: [String: UInt16] = [:]
        for name in ["web-1", "db-1"] {
            clock = .now
            let built = try await create("\(dir)/\(name).cfg", on: host)
            let took = milliseconds(since: clock)
            domids[name] = built.domain.domid.rawValue
            timings.append(("create \(name)", String(format: "%.0f ms", took)))
            say("created \(name): domid \(built.domain.domid.rawValue) in \(String(format: "%.0f", took)) ms")
        }
        _ = await eventually(seconds: 5) {
            for domid in domids.values {
                let base = "/local/domain/\(domid)/device/console"
                for devid in (try? await host.store.directory(base)) ?? [] {
                    if (try? await host.store.readString("\(base)/\(devid)/state")) != "4" { return false }
                }
            }
            return true
        }
        out("$ conch channel-list web-1 db-1")
        out(await channelList(host, [domids["web-1"]!, domids["db-1"]!]), terminator: "")

        step("Provision web-1 over its socket channel (examples/provisioning/host-agent.py)")
        clock = .now
        let agent = try runProcess(
            "\(examples)/host-agent.py",
            [
                "--socket", "\(dir)/web-1.provision.sock", "--hostname", "web-1", "--ssh-key",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGUta2V5LW5vdC1yZWFsLWNvbmNoLWRlbW8h demo@conch", "--ip",
                "192.0.2.10",
            ]
        )
        let provisionMs = milliseconds(since: clock)
        out(agent.output, terminator: "")
        try check(agent.status == 0, "the provisioning agent failed (status \(agent.status))")
        let hostname = try? String(contentsOfFile: "\(share)/web-1-root/hostname", encoding: .utf8)
        try check(hostname == "web-1\n", "web-1 did not write its hostname file")
        say("web-1 applied hostname, ssh-key and ip: \(share)/web-1-root/{hostname,authorized_keys,ip}")
        timings.append(("provisioning handshake", String(format: "%.0f ms", provisionMs)))

        step("Talk to db-1 over its socket channel")
        let ping = try UnixSocketPath.connect("\(dir)/db-1.ping.sock")
        defer { close(ping) }
        var rtts: [Double] = []
        for message in ["hello", "are you there?", "bye"] {
            clock = .now
            try check(writeAll(ping, Array("\(message)\n".utf8)[...]), "cannot write to db-1")
            let reply = readLine(ping, timeoutMilliseconds: 5000)
            rtts.append(milliseconds(since: clock))
            say("sent \"\(message)\" → got \"\(reply ?? "nothing")\"")
            try check(reply == "pong: \(message)", "db-1 did not answer \"\(message)\"")
        }
        timings.append(("channel round trip (median of 3)", String(format: "%.2f ms", rtts.sorted()[1])))

        step("Boot logs (consoled's console 0 logs)")
        for name in ["web-1", "db-1"] {
            let log = "\(runDirectory.logDirectory)/guest-\(name).log"
            var text = ""
            let seen = await eventually(seconds: 10) {
                text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                return text.contains(name == "web-1" ? "applied" : "db-1 done")
            }
            out("--- \(log)")
            out(text.split(whereSeparator: \.isNewline).prefix(14).joined(separator: "\n"))
            try check(seen, "\(name)'s boot log is incomplete")
        }

        try await hyperlaunch(host)
        let webURL = try await webConsoleStep(host)

        out("\n==> Summary")
        for (what, value) in timings { out("  " + what.padding(toLength: 44, withPad: " ", startingAt: 0) + value) }
        out(String(format: "  %@%.1f s", "total".padding(toLength: 44, withPad: " ", startingAt: 0), seconds))
        out("All steps succeeded.")
        guard let webURL else { return }
        out("\nWeb console: \(webURL)")
        if serveWeb {
            out("Serving the stack and the web console until you press Enter.")
            var byte: UInt8 = 0
            _ = read(STDIN_FILENO, &byte, 1)
        } else {
            out("(It stops with the demo; `conch demo --web` keeps it and the guests up until you press Enter.)")
        }
    }

    /// Creates the guest `file` describes, as `conch create` does (waiting for consoled).
    func create(_ file: String, on host: HostConnection) async throws -> DomainBuilder.Built {
        let parsed = try DomainConfiguration.parse(String(contentsOfFile: file, encoding: .utf8), fileName: file)
        return try await host.create(
            parsed.configuration,
            configFile: file,
            guestKernel: HostConnection.conchGuestKernel(parsed.configuration),
            legacyBuilder: false,
            wait: .seconds(10),
            warn: { say($0) }
        )
    }

    /// Starts `conch web` on the demo's stack and checks that its dashboard lists
    /// the guests, asking as the page does; the URL to open, or nil when xterm.js
    /// is not installed (said, not hidden).
    func webConsoleStep(_ host: HostConnection) async throws -> String? {
        step("Every console in a browser: conch web")
        // A guest that stays up for the page: it greets, then echoes what is typed.
        let file = "\(runDirectory.path)/shell-1.cfg"
        try """
        name = "shell-1"
        kernel = "/bin/sh"
        extra = "-c 'echo Welcome to shell-1, a Conch demo guest: type a line and it comes back; exec cat'"
        channel = [ "name=org.conch.log.0, connection=pty" ]

        """.write(toFile: file, atomically: true, encoding: .utf8)
        let built = try await create(file, on: host)
        say("created shell-1: domid \(built.domain.domid.rawValue)")
        let modules = "/usr/share/nodejs/xterm/lib"
        guard FileManager.default.fileExists(atPath: modules + "/public/Terminal.js") else {
            say("not shown: conch web needs xterm.js (apt-get install libjs-xterm node-xterm)")
            return nil
        }
        let clock = ContinuousClock.now
        let (process, url) = try ChildProcess.announcing(
            executable: ChildProcess.currentExecutable(),
            arguments: ["web", "--listen", "127.0.0.1:0", "--run-dir", runDirectory.path, "--log-level", "warning"],
            logPath: "\(runDirectory.logDirectory)/web.log"
        )
        webConsole = process
        guard let tokenStart = url.range(of: "/?token="),
            let port = Int(url[..<tokenStart.lowerBound].split(separator: ":").last ?? "")
        else { throw DemoFailure(description: "conch web printed '\(url)' instead of its URL") }
        let token = url[tokenStart.upperBound...]
        let refused = try LoopbackHTTP.get(port: port, "/api/state")
        try check(refused.hasPrefix("HTTP/1.1 401"), "conch web answered without its token")
        let state = try LoopbackHTTP.get(port: port, "/api/state?token=\(token)")
        let body = state.components(separatedBy: "\r\n\r\n").dropFirst().joined()
        let dashboard = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        let domains = (dashboard?["domains"] as? [[String: Any]]) ?? []
        let consoles = domains.reduce(0) { $0 + (($1["consoles"] as? [Any])?.count ?? 0) }
        try check(
            state.hasPrefix("HTTP/1.1 200") && domains.contains { $0["name"] as? String == "shell-1" },
            "conch web's dashboard does not list shell-1: \(body)"
        )
        timings.append(("web console up", String(format: "%.0f ms", milliseconds(since: clock))))
        say("conch web lists shell-1 with its console and channel (\(consoles) in all); without the token: 401")
        return url
    }

    var seconds: Double { milliseconds(since: started) / 1000 }

    /// Two guests created while consoled is down; consoled starts 2 s later.
    func hyperlaunch(_ host: HostConnection) async throws {
        step("Hyperlaunch: consoled stopped, two guests booting 400 lines each")
        supervisor.stop("consoled")
        say("consoled stopped")
        let dir = runDirectory.path
        let program =
            "i=0; while [ $i -lt 400 ]; do echo \"boot line $i of 400\"; i=$((i+1)); done; echo boot complete; sleep 3"
        var domids: [String: UInt16] = [:]
        let clock = ContinuousClock.now
        for (name, frontend) in [("boot-new", "new"), ("boot-legacy", "legacy")] {
            let text = """
                name = "\(name)"
                kernel = "/bin/sh"
                extra = "-c '\(program.replacingOccurrences(of: "\"", with: "\\\""))'"
                conch_frontend = "\(frontend)"
                conch_console_io = 1

                """
            let file = "\(dir)/\(name).cfg"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let parsed = try DomainConfiguration.parse(text, fileName: file)
            let built = try await host.create(
                parsed.configuration,
                configFile: file,
                guestKernel: HostConnection.conchGuestKernel(parsed.configuration),
                legacyBuilder: false,
                wait: nil,
                warn: { say($0) }
            )
            domids[name] = built.domain.domid.rawValue
            say("created \(name) (\(frontend) frontend) with --no-wait: domid \(built.domain.domid.rawValue)")
        }
        var newBootMs: Double?
        _ = await eventually(seconds: 2) {
            let dmesg = String(decoding: (try? host.hypervisor.readConsole(clear: false)) ?? [], as: UTF8.self)
            if newBootMs == nil, dmesg.contains("(d\(domids["boot-new"]!)) boot complete") {
                newBootMs = milliseconds(since: clock)
            }
            return false  // watch the whole 2 s
        }
        if newBootMs == nil {
            // A loaded machine: what matters is that it finishes with no backend at all.
            _ = await eventually(seconds: 20) {
                let dmesg = String(decoding: (try? host.hypervisor.readConsole(clear: false)) ?? [], as: UTF8.self)
                guard dmesg.contains("(d\(domids["boot-new"]!)) boot complete") else { return false }
                newBootMs = milliseconds(since: clock)
                return true
            }
        }
        let dmesg = String(decoding: try host.hypervisor.readConsole(clear: false), as: UTF8.self)
        let legacyLines = dmesg.split(whereSeparator: \.isNewline).filter {
            $0.hasPrefix("(d\(domids["boot-legacy"]!))")
        }.count
        try check(newBootMs != nil, "the new frontend did not finish booting without a backend")
        say(
            String(format: "boot-new: whole boot log in `conch dmesg` %.0f ms after create — never stalled", newBootMs!)
        )
        // The legacy guest's console ring: full, nobody consuming, the guest waiting.
        let legacy = try host.domain("boot-legacy")
        let page = try host.hypervisor.mapForeign(legacy.domid, frame: legacy.start.consoleFrame, readOnly: true)
        func pendingBytes() -> UInt32 { ConsoleRing(memory: page).backend.input.rawIndices.queued }
        _ = await eventually(seconds: 20) { pendingBytes() == UInt32(ConsoleInterface.outSize) }
        let pending = pendingBytes()
        try check(pending == UInt32(ConsoleInterface.outSize), "boot-legacy's ring is not full (\(pending) bytes)")
        let legacyLog = "\(runDirectory.logDirectory)/guest-boot-legacy.log"
        try check(!FileManager.default.fileExists(atPath: legacyLog), "boot-legacy has a log without consoled")
        say(
            "boot-legacy: stalled — its ring holds \(pending) of \(ConsoleInterface.outSize) bytes, "
                + "\(legacyLines) lines in dmesg (it writes only to the ring)"
        )
        timings.append(("new frontend boot, no backend", String(format: "%.0f ms", newBootMs!)))

        say("starting consoled, 2 s after boot")
        let late = ContinuousClock.now
        try supervisor.start(["consoled"])
        var logs: [String: String] = [:]
        let complete = await eventually(seconds: 15) {
            for name in ["boot-new", "boot-legacy"] {
                logs[name] =
                    (try? String(contentsOfFile: "\(runDirectory.logDirectory)/guest-\(name).log", encoding: .utf8))
                    ?? ""
            }
            return logs.values.allSatisfy { $0.contains("boot complete") }
        }
        try check(complete, "the boot logs did not complete after consoled started")
        let lateMs = milliseconds(since: late)
        for name in ["boot-new", "boot-legacy"] {
            // Split on any newline: "\r\n" is one Character, so split(separator: "\n") misses it.
            let lines = logs[name]!.split(whereSeparator: \.isNewline).map(String.init)
                .filter { $0.hasPrefix("boot line ") }
            let expected = (0..<400).map { "boot line \($0) of 400" }
            try check(
                lines == expected,
                "\(name)'s console log is missing or reordering boot lines (\(lines.count) found)"
            )
            say("\(name): console log has all 400 boot lines in order")
        }
        timings.append(("late consoled → both logs complete", String(format: "%.0f ms", lateMs)))
        for domid in domids.values { try? await host.builder.destroy(DomID(domid)) }
    }

    func channelList(_ host: HostConnection, _ domids: [UInt16]) async -> String {
        var entries: [ChannelListEntry] = []
        for domid in domids { entries += await host.channelEntries(domid) }
        return ChannelList.format(entries)
    }

    func eventually(seconds: Double, _ condition: () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return await condition()
    }

    /// One line from a socket (without its newline), or nil on timeout or close.
    func readLine(_ fd: Int32, timeoutMilliseconds: Int32) -> String? {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, timeoutMilliseconds) > 0, read(fd, &byte, 1) == 1 else { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            if byte != UInt8(ascii: "\r") { line.append(byte) }
        }
    }

    func runProcess(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// examples/provisioning: `$CONCH_EXAMPLES`, the working directory, or a
    /// parent of the executable (a `swift build` tree inside the repository).
    static func findExamples() throws -> String {
        var candidates: [String] = []
        if let root = ProcessInfo.processInfo.environment["CONCH_EXAMPLES"] { candidates.append(root) }
        candidates.append(FileManager.default.currentDirectoryPath + "/examples/provisioning")
        var url = URL(fileURLWithPath: ChildProcess.currentExecutable()).deletingLastPathComponent()
        while url.path != "/" {
            candidates.append(url.path + "/examples/provisioning")
            url = url.deletingLastPathComponent()
        }
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate + "/guest-agent.py") {
            return candidate
        }
        throw DemoFailure(description: "cannot find examples/provisioning: run the demo from the repository root")
    }
}
