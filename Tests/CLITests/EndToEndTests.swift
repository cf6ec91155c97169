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

/// `conch up --detach` in a scratch run directory, and `conch down` at the end.
final class UpStack {
    let directory: ScratchDirectory
    var path: String { directory.path }

    init(arguments: [String] = []) throws {
        directory = try ScratchDirectory(prefix: "conch-e2e")
        let up = try ConchExecutable.run(["up", "--detach", "--run-dir", directory.path] + arguments)
        guard up.status == 0, up.stdout.contains("export XENSTORED_PATH=\(directory.path)/xenstored.sock") else {
            throw ConchFailed(description: "conch up failed: \(up.stdout) \(up.stderr)")
        }
    }

    /// Runs `conch <arguments> --run-dir <dir>`.
    @discardableResult
    func conch(_ arguments: [String], input: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        try ConchExecutable.run(arguments + ["--run-dir", path], input: input)
    }

    func write(_ name: String, _ text: String) throws -> String {
        let file = "\(path)/\(name)"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    func eventually(seconds: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }

    func down() throws -> String {
        let result = try conch(["down"])
        return result.stdout + result.stderr
    }

    deinit {
        _ = try? conch(["down"])
        directory.remove()
    }
}

struct ConchFailed: Error, CustomStringConvertible {
    let description: String
}

private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// The built `conch` binary, run as a user would, against real daemons.
@Suite("end to end: the toolstack as a user runs it")
struct EndToEndTests {
    /// A guest that answers on a pty channel and a socket channel.
    static func echoConfig(name: String, directory: String) -> String {
        """
        name = "\(name)"
        kernel = "/bin/sh"
        extra = "-c 'echo booted \(name); c=$CONCH_GUEST_DEV/xen-channel; \
        while [ ! -e $c/org.t.sock ] || [ ! -e $c/org.t.pty ]; do sleep 0.1; done; \
        (while IFS= read -r l; do echo \\"sock:$l\\"; done <$c/org.t.sock >$c/org.t.sock) & \
        while IFS= read -r l; do echo \\"pty:$l\\"; done <$c/org.t.pty >$c/org.t.pty'"
        channel = [
            "name=org.t.sock, connection=socket, path=\(directory)/\(name).sock",
            "name=org.t.pty, connection=pty",
        ]

        """
    }

    @Test func upCreateListConsoleHotplugDestroyDown() throws {
        let stack = try UpStack()
        let config = try stack.write("e2e.cfg", Self.echoConfig(name: "e2e", directory: stack.path))

        let created = try stack.conch(["create", config])
        #expect(created.status == 0, "create: \(created.stderr)")
        let domid = try #require(UInt16(created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))

        let list = try stack.conch(["list"])
        #expect(list.stdout.hasPrefix("Name                                        ID   Mem VCPUs\tState\tTime(s)\n"))
        #expect(list.stdout.contains("Domain-0 "))
        let row = try #require(list.stdout.split(separator: "\n").first { $0.hasPrefix("e2e ") })
        #expect(row.split(separator: " ", omittingEmptySubsequences: true)[1] == "\(domid)")
        let json = try JSONSerialization.jsonObject(with: Data(try stack.conch(["list", "--json"]).stdout.utf8))
        let rows = try #require(json as? [[String: Any]])
        #expect(rows.contains { $0["name"] as? String == "e2e" && $0["domid"] as? Int == Int(domid) })

        // Both channels connect (frontend state 4) once the guest runs.
        var channels = ""
        #expect(
            try stack.eventually {
                channels = try stack.conch(["channel-list", "e2e"]).stdout
                return channels.split(separator: "\n").dropFirst().filter { $0.contains(" 4 ") }.count == 2
            },
            "channel-list: \(channels)"
        )
        let lines = channels.split(separator: "\n")
        #expect(lines.first == "Idx BE state evt-ch ring-ref connection                               ")
        #expect(lines.count == 3)
        #expect(lines[1].hasPrefix("0   0  4 ") && lines[1].contains(" socket "))
        #expect(lines[2].hasPrefix("1   0  4 ") && lines[2].contains(" pty ") && lines[2].contains("/dev/pts/"))

        // conch console, without a terminal, on each kind of channel and on console 0.
        let viaSocket = try stack.conch(["console", "e2e", "--channel", "org.t.sock"], input: "over the socket\n")
        #expect(viaSocket.stdout.contains("sock:over the socket"), "stderr: \(viaSocket.stderr)")
        let viaPty = try stack.conch(["console", "e2e", "-n", "2"], input: "over the pty\n")
        #expect(viaPty.stdout.contains("pty:over the pty"), "stderr: \(viaPty.stderr)")
        let primary = try stack.conch(["console", "e2e", "--linger", "0.5"])
        #expect(primary.stdout.contains("booted e2e"), "console 0: \(primary.stdout) \(primary.stderr)")

        // Hot-plug a channel: consoled publishes its socket, the guest sees its link.
        let attach = try stack.conch(
            ["channel-attach", "e2e", "name=org.t.hot, connection=socket, path=\(stack.path)/hot.sock"]
        )
        #expect(attach.status == 0, "channel-attach: \(attach.stderr)")
        #expect(attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "2")
        // The guest's devices are in its own /run; its kernel says what it connected.
        let console = "\(stack.path)/logs/guest-e2e.log"
        func bootLog() -> String { (try? String(contentsOfFile: console, encoding: .utf8)) ?? "" }
        #expect(stack.eventually { bootLog().contains("hvc3: connected (org.t.hot)") }, "the guest never saw org.t.hot")
        #expect(FileManager.default.fileExists(atPath: "\(stack.path)/hot.sock"))
        #expect(
            try stack.eventually {
                try stack.conch(["channel-list", "e2e"]).stdout.split(separator: "\n").count == 4
            }
        )

        let detach = try stack.conch(["channel-detach", "e2e", "2"])
        #expect(detach.status == 0, "channel-detach: \(detach.stderr)")
        #expect(!detach.stderr.contains("warning"), "the guest closed its end: \(detach.stderr)")
        #expect(stack.eventually { bootLog().contains("hvc3: removed") }, "org.t.hot is still in the guest")
        // The guest's removal and consoled's (through its keeper) are independent.
        #expect(
            stack.eventually { !FileManager.default.fileExists(atPath: "\(stack.path)/hot.sock") },
            "consoled did not remove the socket"
        )
        #expect(try stack.conch(["channel-list", "e2e"]).stdout.split(separator: "\n").count == 3)

        let wrong = try stack.conch(["channel-detach", "e2e", "7"])
        #expect(wrong.status != 0)
        #expect(wrong.stderr.contains("has no channel 7"))

        #expect(try stack.conch(["destroy", "e2e"]).status == 0)
        #expect(!(try stack.conch(["list"]).stdout.contains("e2e ")))
        #expect(!FileManager.default.fileExists(atPath: "\(stack.path)/e2e.sock"), "the channel socket went")

        let down = try stack.down()
        #expect(down.contains("stopped supervisor"), "\(down)")
        for daemon in ["hypervisor", "xenstored", "consoled", "up"] {
            #expect(
                !FileManager.default.fileExists(atPath: "\(stack.path)/\(daemon).pid"),
                "\(daemon) still has a pid file"
            )
        }
    }

    /// `conch console` on console 0 starts with consoled's history: the last 64 KiB,
    /// with a marker for what was dropped before it, and nothing twice.
    @Test func consoleZeroReplaysItsHistory() throws {
        let stack = try UpStack()
        let config = try stack.write(
            "chatty.cfg",
            """
            name = "chatty"
            kernel = "/bin/sh"
            extra = "-c 'i=0; while [ $i -lt 3000 ]; do echo \\"boot line $i, padded to about fifty bytes\\"; \
            i=$((i+1)); done; sleep 60'"

            """
        )
        #expect(try stack.conch(["create", config]).status == 0)
        let log = stack.path + "/logs/guest-chatty.log"
        #expect(
            stack.eventually {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("boot line 2999,")
            },
            "the whole boot reached the log"
        )
        let attached = try stack.conch(["console", "chatty", "--linger", "0.5"])
        #expect(attached.stdout.contains("bytes of earlier output dropped]"), "the history marks its drop")
        #expect(attached.stdout.components(separatedBy: "boot line 2999,").count == 2, "the last line, once")
        #expect(!attached.stdout.contains("boot line 0,"), "older than the 64 KiB history")
        #expect(attached.stdout.utf8.count >= 60_000 && attached.stdout.utf8.count < 70_000)
    }

    /// `conch up` restarts a daemon that dies and says so in its log.
    @Test func upRestartsACrashedDaemon() throws {
        let stack = try UpStack()
        let pidFile = stack.path + "/consoled.pid"
        let first = try #require(
            Int32(
                (try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)
            )
        )
        kill(first, SIGKILL)
        var second: Int32?
        #expect(
            stack.eventually {
                second = (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap {
                    Int32($0.trimmingCharacters(in: .whitespacesAndNewlines))
                }
                return second != nil && second != first && kill(second!, 0) == 0
                    && FileManager.default.fileExists(atPath: stack.path + "/consoled.sock")
            },
            "a new consoled is running"
        )
        var log = ""
        #expect(
            stack.eventually {
                log = (try? String(contentsOfFile: stack.path + "/logs/up.log", encoding: .utf8)) ?? ""
                return log.contains("consoled exited (signalled(9))") && log.contains("consoled restarted (restart 1)")
            },
            "\(log)"
        )
        // And it serves: a new domain's console comes up.
        let config = try stack.write("after.cfg", Self.echoConfig(name: "after", directory: stack.path))
        #expect(try stack.conch(["create", config]).status == 0)
    }

    @Test func createWaitsForConsoledAndSaysWhatIsMissing() throws {
        let stack = try UpStack(arguments: ["--no-consoled"])
        let config = try stack.write("late.cfg", Self.echoConfig(name: "late", directory: stack.path))

        let refused = try stack.conch(["create", config, "--timeout", "0.5"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("consoled is not running"), "\(refused.stderr)")
        #expect(refused.stderr.contains("console 0"), "names the missing piece: \(refused.stderr)")
        #expect(!(try stack.conch(["list"]).stdout.contains("late ")), "nothing is left half-built")

        // --no-wait starts it anyway (hyperlaunch); a consoled started later serves it.
        let started = try stack.conch(["create", config, "--no-wait"])
        #expect(started.status == 0, "\(started.stderr)")
        #expect(try stack.conch(["list"]).stdout.contains("late "))
        let consoled = try DaemonProcess(
            ["consoled", "--run-dir", stack.path],
            readyPath: stack.path + "/consoled.sock",
            logDirectory: stack.path
        )
        defer { consoled.stop() }
        let reply = try stack.eventually {
            try stack.conch(["console", "late", "--channel", "org.t.sock"], input: "late hello\n").stdout
                .contains("sock:late hello")
        }
        #expect(reply, "the late consoled serves the channel")
        // Shut down cleanly through control/shutdown.
        let shutdown = try stack.conch(["shutdown", "-w", "late"])
        #expect(shutdown.status == 0, "\(shutdown.stderr)")
        #expect(!(try stack.conch(["list"]).stdout.contains("late ")))
    }

    @Test func errorsNameTheProblemAndTheFix() throws {
        let scratch = try ScratchDirectory(prefix: "conch-e2e-err")
        defer { scratch.remove() }
        let noStack = try ConchExecutable.run(["list", "--run-dir", scratch.path])
        #expect(noStack.status != 0)
        #expect(noStack.stderr.contains("conch up --detach"), "\(noStack.stderr)")
        let missing = try ConchExecutable.run(["create", "/nonexistent.cfg", "--run-dir", scratch.path])
        #expect(missing.stderr.contains("cannot read /nonexistent.cfg"))
        for command in [
            "create", "list", "destroy", "shutdown", "console", "channel-list", "channel-attach", "channel-detach",
            "up",
            "down", "demo", "consoled", "guest-kernel", "hypervisor", "xenstored", "dmesg", "stats", "web", "status",
        ] {
            let help = try ConchExecutable.run([command, "--help"])
            #expect(help.status == 0, "\(command) --help")
            #expect(help.stdout.contains("Example"), "\(command) --help shows an example")
            #expect(!help.stdout.contains("\\\n"), "\(command) --help has no stray line-continuation backslash")
        }
    }

    /// `conch create --dry-run` prints exactly the golden JSON of the pure parser
    /// for every error fixture (each channel mistake among them).
    @Test func dryRunJSONMatchesTheGoldenFiles() throws {
        let fixtures = repositoryRoot + "/Tests/ToolstackTests/Fixtures"
        let names = try FileManager.default.contentsOfDirectory(atPath: fixtures).filter {
            $0.hasSuffix(".cfg") && ($0.hasPrefix("ch-") || $0.hasPrefix("bad-"))
        }
        #expect(names.count >= 14)
        for name in names.sorted() {
            let result = try ConchExecutable.run(["create", "--dry-run", name], currentDirectory: fixtures)
            let golden = try String(contentsOfFile: fixtures + "/" + name.dropLast(4) + ".json", encoding: .utf8)
            #expect(result.status == 1, "\(name) is an error")
            #expect(result.stdout == golden, "\(name): \(result.stdout)")
        }
        // A valid configuration: the kernel is checked on the host too.
        let scratch = try ScratchDirectory(prefix: "conch-e2e-dry")
        defer { scratch.remove() }
        try "name = \"ok\"\nkernel = \"/bin/true\"\nchannel = [ \"name=a, connection=pty\" ]\n".write(
            toFile: scratch.path + "/ok.cfg",
            atomically: true,
            encoding: .utf8
        )
        let ok = try ConchExecutable.run(["create", "--dry-run", scratch.path + "/ok.cfg"])
        #expect(ok.status == 0)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(ok.stdout.utf8)) as? [String: Any])
        let configuration = try #require(report["configuration"] as? [String: Any])
        #expect(configuration["kernel"] as? String == "/bin/true")
        #expect((configuration["channels"] as? [Any])?.count == 1)
        try "name = \"nokernel\"\nkernel = \"/usr/bin/agent-that-is-not-here\"\n".write(
            toFile: scratch.path + "/nk.cfg",
            atomically: true,
            encoding: .utf8
        )
        let noKernel = try ConchExecutable.run(["create", "--dry-run", scratch.path + "/nk.cfg"])
        #expect(noKernel.status == 1)
        #expect(noKernel.stdout.contains("agent-that-is-not-here"))
        #expect(noKernel.stderr.contains("agent-that-is-not-here"), "the error goes to stderr too, as xl prints it")

        // Warnings go to stderr as well as into the JSON, even when an error follows.
        try "name = \"typo\"\nkernal = \"/bin/true\"\n".write(
            toFile: scratch.path + "/typo.cfg",
            atomically: true,
            encoding: .utf8
        )
        let typo = try ConchExecutable.run(["create", "--dry-run", scratch.path + "/typo.cfg"])
        #expect(typo.status == 1)
        let warning = "ignoring unknown or unsupported parameter 'kernal' (did you mean 'kernel'?)"
        #expect(typo.stderr.contains(warning), "\(typo.stderr)")
        #expect(typo.stdout.contains(warning))
        #expect(typo.stderr.contains("no kernel specified"))
        let created = try ConchExecutable.run(["create", scratch.path + "/typo.cfg"])
        #expect(created.status != 0)
        #expect(created.stderr.contains(warning) && created.stderr.contains("no kernel specified"), "\(created.stderr)")
    }

    @Test func provisioningExample() throws {
        let stack = try UpStack()
        let examples = repositoryRoot + "/examples/provisioning"
        // The guest cannot reach the run directory; /tmp is where a host shares with it.
        let share = try ScratchDirectory(prefix: "conch-e2e-share")
        defer { share.remove() }
        chmod(share.path, 0o1777)
        let out = share.path + "/provisioned"
        let config = try stack.write(
            "provision.cfg",
            """
            name = "prov"
            kernel = "\(examples)/guest-agent.py"
            extra = "\(out)"
            channel = [ "name=org.conch.provision.0, connection=socket, path=\(stack.path)/provision.sock" ]

            """
        )
        #expect(try stack.conch(["create", config]).status == 0)
        let agent = try runProgram(
            examples + "/host-agent.py",
            [
                "--socket", stack.path + "/provision.sock", "--hostname", "web-7", "--ssh-key",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGUta2V5LW5vdC1yZWFsLWNvbmNoLWRlbW8h e2e@conch", "--ip",
                "192.0.2.77",
            ]
        )
        #expect(agent.status == 0, "host agent: \(agent.stdout) \(agent.stderr)")
        #expect(try String(contentsOfFile: out + "/hostname", encoding: .utf8) == "web-7\n")
        #expect(try String(contentsOfFile: out + "/ip", encoding: .utf8) == "192.0.2.77\n")
        #expect(try String(contentsOfFile: out + "/authorized_keys", encoding: .utf8).hasSuffix("e2e@conch\n"))
        // The guest exits after provisioning: shut down, then destroyed (on_poweroff).
        #expect(try stack.eventually { !(try stack.conch(["list"]).stdout.contains("prov ")) })
        let log = try String(contentsOfFile: stack.path + "/logs/guest-prov.log", encoding: .utf8)
        #expect(log.contains("provision agent"), "the agent's output is in the boot log")
    }

    /// `conch demo | head -1`: the reader goes away after one line; the demo must
    /// still stop every daemon it started and remove its run directory.
    @Test func aDemoWhoseReaderGoesAwayStillTearsDown() throws {
        let conch = try ConchExecutable.path()
        let result = try runProgram(
            "/bin/sh",
            ["-c", "\"$0\" demo | head -n 1", conch],
            currentDirectory: repositoryRoot
        )
        let line = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let runDirectory = try #require(line.components(separatedBy: "run directory ").last, "\(result.stdout)")
        try #require(runDirectory.hasPrefix("/"), "no run directory in: \(line)")
        func survivors() -> [String] {
            let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return pids.filter { Int($0) != nil }.compactMap { pid in
                guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
                let command = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
                return command.contains(runDirectory) ? "\(pid): \(command)" : nil
            }
        }
        #expect(
            eventually(seconds: 60) { survivors().isEmpty && !FileManager.default.fileExists(atPath: runDirectory) },
            "left behind: \(survivors()) (run directory exists: \(FileManager.default.fileExists(atPath: runDirectory)))"
        )
    }

    @Test func demoSucceeds() throws {
        let result = try ConchExecutable.run(["demo"], currentDirectory: repositoryRoot)
        #expect(result.status == 0, "demo: \(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("All steps succeeded."))
        #expect(result.stdout.contains("boot-legacy: console log has all 400 boot lines in order"))
    }
}

@Suite("conch status")
struct StatusTests {
    @Test func statusSaysWhetherEachDaemonAnswers() throws {
        let nothing = try ScratchDirectory(prefix: "conch-status")
        defer { nothing.remove() }
        let down = try ConchExecutable.run(["status", "--run-dir", nothing.path])
        #expect(down.status == 1)
        #expect(down.stdout.contains("NOT healthy") && down.stdout.contains("xenstored       DOWN"), "\(down.stdout)")
        #expect(down.stderr.contains("conch up --detach"), "\(down.stderr)")

        let stack = try UpStack()
        let config = try stack.write("st.cfg", #"name = "st"\#nkernel = "/bin/cat"\#n"#)
        try #require(try stack.conch(["create", config]).status == 0)
        let up = try stack.conch(["status", "--json"])
        #expect(up.status == 0, "\(up.stdout) \(up.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(up.stdout.utf8)) as? [String: Any])
        #expect(json["healthy"] as? Bool == true)
        let daemons = (json["daemons"] as? [[String: Any]]) ?? []
        #expect(daemons.map { $0["name"] as? String } == ["hypervisor", "xenstored", "consoled", "consoled-keeper"])
        #expect(daemons.allSatisfy { $0["healthy"] as? Bool == true && ($0["pid"] as? Int ?? 0) > 1 })
        #expect((json["guests"] as? [String])?.first?.hasPrefix("st (") == true, "\(json)")
        #expect(json["supervisor_pid"] != nil)

        // A daemon whose pid file names a live process that does not answer is not healthy.
        // (`conch down` at the end kills what the pid file names: a sleep of our own.)
        #expect(try stack.down().contains("stopped"))
        let impostor = try ChildProcess(executable: "/bin/sleep", arguments: ["30"])
        defer {
            impostor.kill(SIGKILL)
            _ = try? impostor.wait()
        }
        try "\(impostor.pid)\n".write(toFile: "\(stack.path)/xenstored.pid", atomically: true, encoding: .utf8)
        let stale = try stack.conch(["status"])
        #expect(stale.status == 1)
        #expect(stale.stdout.contains("pid \(impostor.pid) is alive but its socket does not answer"), "\(stale.stdout)")
    }
}

@Suite("shell completion")
struct CompletionTests {
    /// bash, with the script `conch --generate-completion-script bash` prints, asked
    /// to complete `line` (the cursor at its end) as if TAB were pressed.
    static func bashCompletes(_ words: [String], script: String) throws -> [String] {
        let quoted = words.map { "'\($0)'" }.joined(separator: " ")
        let line = words.joined(separator: " ")
        let program = """
            source '\(script)'
            COMP_WORDS=(\(quoted)); COMP_CWORD=\(words.count - 1)
            COMP_LINE='\(line)'; COMP_POINT=${#COMP_LINE}
            _conch conch '\(words.last!)' '\(words.dropLast().last!)'  # as bash calls it: command, word, previous word
            printf '%s\\n' "${COMPREPLY[@]}"
            """
        let directory = (try ConchExecutable.path() as NSString).deletingLastPathComponent
        let result = try runProgram(
            "/bin/bash",
            ["-c", program],
            environment: ProcessInfo.processInfo.environment.merging(
                ["PATH": directory + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "")]
            ) { $1 }
        )
        return result.stdout.split(separator: "\n").map(String.init)
    }

    @Test func bashCompletesDomainAndChannelNames() throws {
        let stack = try UpStack()
        for name in ["alpha", "beta"] {
            let config = try stack.write(
                "\(name).cfg",
                "name = \"\(name)\"\nkernel = \"/bin/cat\"\nchannel = [ \"name=org.\(name).agent, connection=pty\" ]\n"
            )
            try #require(try stack.conch(["create", config]).status == 0)
        }
        let script = try stack.write(
            "conch.bash",
            try ConchExecutable.run(["--generate-completion-script", "bash"]).stdout
        )
        let run = ["--run-dir", stack.path]
        #expect(try Self.bashCompletes(["conch", "console"] + run + [""], script: script) == ["alpha", "beta"])
        #expect(try Self.bashCompletes(["conch", "destroy"] + run + ["b"], script: script) == ["beta"])
        #expect(
            try Self.bashCompletes(["conch", "console"] + run + ["beta", "--channel", ""], script: script)
                == ["org.beta.agent"]
        )
    }
}

@Suite("daemon logs as JSON")
struct JSONLogTests {
    @Test func upWithLogFormatJSONGivesEveryDaemonOneJSONObjectPerLine() throws {
        let stack = try UpStack(arguments: ["--log-format", "json", "--log-level", "debug"])
        let config = try stack.write("j.cfg", #"name = "j""# + "\nkernel = \"/bin/cat\"\n")
        try #require(try stack.conch(["create", config]).status == 0)
        for daemon in ["hypervisor", "xenstored", "consoled"] {
            let log = (try? String(contentsOfFile: "\(stack.path)/logs/\(daemon).log", encoding: .utf8)) ?? ""
            let lines = log.split(separator: "\n")
            #expect(!lines.isEmpty, "\(daemon) logged nothing")
            for line in lines {
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(object != nil, "\(daemon): not a JSON object: \(line)")
                guard let object else { continue }
                #expect(
                    Set(object.keys).isSuperset(of: ["timestamp", "level", "label", "message", "source"]),
                    "\(line)"
                )
                #expect((object["label"] as? String)?.hasPrefix("conch.") == true, "\(line)")
            }
        }
    }
}

@Suite("domain records across upgrades")
struct DomainRecordCompatibilityTests {
    @Test func aRecordWrittenByAnOlderConchIsStillRead() throws {
        let stack = try UpStack()
        let config = try stack.write("old.cfg", "name = \"old\"\nkernel = \"/bin/cat\"\nmemory = 48\nvcpus = 2\n")
        let created = try stack.conch(["create", config])
        try #require(created.status == 0)
        let domid = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let record = "\(stack.path)/domains/\(domid).json"
        let text = try String(contentsOfFile: record, encoding: .utf8)
        try #require(text.contains(#""maxVcpus""#), "the record's key changed again: \(text)")
        // As conch wrote it before the key was renamed.
        try text.replacingOccurrences(of: #""maxVcpus""#, with: #""maxVCPUs""#)
            .write(toFile: record, atomically: true, encoding: .utf8)
        let list = try stack.conch(["list", "--json"])
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        let row = try #require(rows.first { $0["name"] as? String == "old" })
        #expect(row["memory"] as? Int == 48, "\(row)")
        #expect(row["vcpus"] as? Int == 2, "\(row)")
        #expect(row["cpu_seconds"] != nil, "list --json keys are snake_case: \(row)")
    }
}

@Suite("who is attached to a socket channel")
struct SocketClientReportTests {
    @Test func statsSayWhetherAClientIsConnectedToASocketChannel() throws {
        let stack = try UpStack()
        let config = try stack.write("sc.cfg", EndToEndTests.echoConfig(name: "sc", directory: stack.path))
        try #require(try stack.conch(["create", config]).status == 0)
        func socketChannel() throws -> [String: Any]? {
            let stats = try JSONSerialization.jsonObject(with: Data(try stack.conch(["stats", "--json"]).stdout.utf8))
            return ((stats as? [String: Any])?["consoles"] as? [[String: Any]])?.first {
                $0["connection"] as? String == "socket"
            }
        }
        #expect(try stack.eventually { try socketChannel()?["client_connected"] as? Bool == false }, "no report")
        #expect(try socketChannel()?["session_pid"] == nil)
        let client = try UnixSocketPath.connect("\(stack.path)/sc.sock")
        #expect(
            try stack.eventually { try socketChannel()?["client_connected"] as? Bool == true },
            "a connected client is not reported"
        )
        #expect(try stack.conch(["stats"]).stdout.contains(" client"), "the table does not say so")
        close(client)
        #expect(try stack.eventually { try socketChannel()?["client_connected"] as? Bool == false }, "still reported")
        // A pty console reports sessions instead.
        let stats = try JSONSerialization.jsonObject(with: Data(try stack.conch(["stats", "--json"]).stdout.utf8))
        let zero = ((stats as? [String: Any])?["consoles"] as? [[String: Any]])?.first { $0["devid"] as? Int == 0 }
        #expect(zero?["client_connected"] == nil, "\(String(describing: zero))")
    }
}
