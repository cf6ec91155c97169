//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Testing
import XenTestKit

/// Runs the built `conch` binary as a user would.
@Suite("conch command line")
struct CLITests {
    @Test func helpListsTheSubcommands() throws {
        let result = try ConchExecutable.run(["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("USAGE: conch <subcommand>"))
        #expect(result.stdout.contains("bench"))
        #expect(!result.stdout.contains("ring-peer"), "internal commands stay hidden")
    }

    @Test func versionPrintsTheVersion() throws {
        let result = try ConchExecutable.run(["version"])
        #expect(result.status == 0)
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("conch ") == true)
        #expect(
            try ConchExecutable.run(["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                == lines.first?.dropFirst("conch ".count).trimmingCharacters(in: .whitespacesAndNewlines)
        )
        #expect(lines.contains { $0.hasPrefix("real Xen: ") }, "says whether the dom0 backend is built in")
    }

    @Test func benchRingJSONIsOneObjectWithTheCeilingKeys() throws {
        let result = try ConchExecutable.run(["bench", "ring", "--json", "--mebibytes", "4", "--runs", "1"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 1, "exactly one line of JSON on stdout")
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let json = try #require(object)
        for key in ["busy_mbps", "eventfd_mbps", "hybrid_mbps", "eventfd_vs_busy_ratio", "hybrid_vs_busy_ratio"] {
            let spread = try #require(json[key] as? [String: Double], "\(key) must be a median and a range")
            let (median, low, high) = (spread["median"] ?? 0, spread["min"] ?? 0, spread["max"] ?? 0)
            #expect(low > 0 && low <= median && median <= high, "\(key): \(spread)")
        }
    }

    /// `bench xenstore --against` measures another daemon on a socket beside a fresh
    /// conch xenstored, pair by pair, and leaves nothing behind in the other's store.
    @Test func benchXenstoreAgainstAnotherDaemonComparesEveryOperation() throws {
        let other = try XenstoredProcess()
        defer { other.stop() }
        let result = try ConchExecutable.run([
            "bench", "xenstore", "--against", other.socketPath, "--operations", "100", "--pairs", "2", "--json",
        ])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let json = try #require(object)
        #expect(json["against"] as? String == other.socketPath)
        #expect(json["pairs"] as? Int == 2)
        let operations = try #require(json["operations"] as? [String: [String: [String: Double]]])
        #expect(Set(operations.keys) == ["read", "write", "directory", "tx_empty", "tx_rmw"])
        for (name, figures) in operations {
            for key in ["conch_p50_us", "other_p50_us", "ratio"] {
                let spread = try #require(figures[key], "\(name).\(key)")
                let (median, low, high) = (spread["median"] ?? 0, spread["min"] ?? 0, spread["max"] ?? 0)
                #expect(low > 0 && low <= median && median <= high, "\(name).\(key): \(spread)")
            }
        }
        let listing = try ConchExecutable.run(["store", "ls", "--socket", other.socketPath, "/local/domain/0"])
        #expect(!listing.stdout.contains("conch-bench"), "the scratch node is removed: \(listing.stdout)")

        let nobody = try ConchExecutable.run(["bench", "xenstore", "--against", "/nonexistent/xs.sock"])
        #expect(nobody.status != 0)
        #expect(nobody.stderr.contains("nothing answers on /nonexistent/xs.sock"), "\(nobody.stderr)")
    }

    @Test func badOptionsNameTheProblem() throws {
        let result = try ConchExecutable.run(["bench", "ring", "--runs", "0"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("--runs"))
    }
}
