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
import Testing
import XenTestKit

@Suite("the host stack's configuration: flags, CONCH_* and a JSON file")
struct StackConfigurationTests {
    func file(_ text: String) throws -> (path: String, directory: ScratchDirectory) {
        let directory = try ScratchDirectory(prefix: "conch-config")
        let path = directory.path + "/conch.json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (path, directory)
    }

    @Test func flagsOverrideTheEnvironmentWhichOverridesTheFile() async throws {
        let (path, directory) = try file(
            #"{"log": {"level": "error", "format": "json", "max_bytes": 4096}, "consoled": {"timestamps": true}, "xenstored": {"quota_nodes": 300}}"#
        )
        defer { directory.remove() }
        let configuration = try await StackConfiguration.resolve(
            flags: ["log.level=debug"],
            environment: ["CONCH_LOG_LEVEL": "notice", "CONCH_LOG_FORMAT": "text", "LOG_FORMAT": "json"],
            file: path
        )
        #expect(configuration[.logLevel] == "debug")  // the flag
        #expect(configuration[.logFormat] == "text")  // CONCH_LOG_FORMAT; an unprefixed variable is not ours
        #expect(configuration[.logMaxBytes] == "4096")  // the file, a JSON number
        #expect(configuration[.timestamps] == "true")  // a JSON boolean
        #expect(configuration[.replaceEscape] == nil)
        #expect(
            configuration.arguments(for: "consoled")
                == ["--log-level", "debug", "--log-format", "text", "--log-max-bytes", "4096", "--timestamps"]
        )
        #expect(
            configuration.arguments(for: "xenstored")
                == ["--log-level", "debug", "--log-format", "text", "--quota-nodes", "300"]
        )
        #expect(configuration.arguments(for: "hypervisor") == ["--log-level", "debug", "--log-format", "text"])
    }

    @Test(arguments: [
        (#"{"log": {"levle": "info"}}"#, "unknown setting 'log.levle'"),
        (#"{"consoled": {"rate_bytes": "fast"}}"#, "consoled.rate_bytes"),
        (#"{"consoled": {"rate_bytes": 1.5}}"#, "must be a whole number"),
        (#"{"consoled": {"rate_bytes": -1}}"#, "must be a whole number"),
        (#"{"consoled": {"timestamps": "yes"}}"#, "must be true or false"),
        (#"{"consoled": {"timestamps": [true]}}"#, "must be a string, a number or a boolean"),
        (#"{"log": "json"}"#, "'log' must be an object"),
        (#"["log"]"#, "is not a JSON object"),
        (#"{"log": {"format": "xml"}}"#, "must be one of text, json"),
    ])
    func aBadFileIsRefusedNamingTheSetting(text: String, message: String) async throws {
        let (path, directory) = try file(text)
        defer { directory.remove() }
        await #expect {
            try await StackConfiguration.resolve(flags: [], environment: [:], file: path)
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test func badFlagsAndVariablesAreRefusedToo() async throws {
        await #expect(throws: StackConfiguration.Invalid.self) {
            try await StackConfiguration.resolve(flags: ["log.nope=1"], environment: [:], file: nil)
        }
        await #expect(throws: StackConfiguration.Invalid.self) {
            try await StackConfiguration.resolve(flags: ["no-equals"], environment: [:], file: nil)
        }
        await #expect(throws: StackConfiguration.Invalid.self) {
            try await StackConfiguration.resolve(
                flags: [],
                environment: ["CONCH_XENSTORED_QUOTA_NODES": "many"],
                file: nil
            )
        }
    }

    @Test func aSystemStackLogsToVarLogConch() {
        let none = StackConfiguration()
        #expect(none.logDirectory(for: RunDirectory(path: "/var/run/conch")) == "/var/log/conch")
        #expect(none.logDirectory(for: RunDirectory(path: "/run/conch")) == "/var/log/conch")
        #expect(none.logDirectory(for: RunDirectory(path: "/tmp/conch-0")) == "/tmp/conch-0/logs")
        let set = StackConfiguration(values: [.logDirectory: "/srv/logs"])
        #expect(set.logDirectory(for: RunDirectory(path: "/var/run/conch")) == "/srv/logs")
    }

    @Test func upPassesEverySettingToItsDaemonAndRotatesTheirLogs() throws {
        let directory = try ScratchDirectory(prefix: "conch-config-up")
        defer { directory.remove() }
        let logs = directory.path + "/logs-elsewhere"
        let config = directory.path + "/conch.json"
        try """
        {"log": {"directory": "\(logs)", "max_bytes": 1500, "backups": 1, "level": "debug"},
         "consoled": {"replace_escape": true, "rate_bytes": 65536},
         "xenstored": {"quota_watches": 64}}
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let stack = try UpStack(arguments: ["--config", config, "--set", "consoled.rate_burst=131072"])
        func commandLine(_ pidFile: String) -> [String] {
            guard let pid = PidFile(path: "\(stack.path)/\(pidFile)").read(),
                let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
            else { return [] }
            return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        }
        let consoled = commandLine("consoled.pid").joined(separator: " ")
        for expected in [
            "--replace-escape", "--rate-bytes 65536", "--rate-burst 131072", "--log-dir \(logs)",
            "--log-max-bytes 1500", "--log-backups 1", "--log-level debug",
        ] {
            #expect(consoled.contains(expected), "consoled runs as: \(consoled)")
        }
        #expect(commandLine("xenstored.pid").joined(separator: " ").contains("--quota-watches 64"))
        // The daemons' own logs are there, private, and rotate at 1500 bytes (debug
        // logging fills them fast).
        let config2 = try stack.write("r.cfg", #"name = "r""# + "\nkernel = \"/bin/cat\"\n")
        try #require(try stack.conch(["create", config2]).status == 0)
        #expect(stack.eventually { FileManager.default.fileExists(atPath: logs + "/xenstored.log.1") }, "no rotation")
        #expect(!FileManager.default.fileExists(atPath: logs + "/xenstored.log.2"), "more backups than asked")
        var info = stat()
        #expect(stat(logs, &info) == 0 && info.st_mode & 0o777 == 0o700)
        #expect(stat(logs + "/xenstored.log", &info) == 0 && info.st_mode & 0o777 == 0o600)
    }
}
