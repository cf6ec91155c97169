//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras

/// `conch bench all`: every benchmark as its own process with `--json`, collected
/// into one table or one JSON object keyed by benchmark.
public enum AllBenchmarks {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Each benchmark's name and the arguments it runs with; `quick` runs are
    /// smoke tests, not figures.
    public static func plan(quick: Bool) -> [(name: String, arguments: [String])] {
        guard quick else {
            return ["ring", "xenstore", "evtchn", "console", "scale", "create"].map { ($0, []) }
        }
        return [
            ("ring", ["--mebibytes", "8", "--runs", "1"]), ("xenstore", ["--operations", "500", "--pairs", "2"]),
            ("evtchn", ["--round-trips", "500", "--pairs", "2"]),
            ("console", ["--mebibytes", "8", "--echoes", "200", "--pairs", "2"]),
            ("scale", ["--consoles", "50", "--idle-seconds", "1"]),
            ("create", ["--rounds", "5", "--parallel", "5"]),
        ]
    }

    /// Runs each benchmark of `plan` with `conch` and returns its JSON object.
    public static func run(
        conch: String,
        quick: Bool,
        progress: (String) -> Void
    ) throws -> [(name: String, figures: [String: Any])] {
        var results: [(name: String, figures: [String: Any])] = []
        for (name, extra) in plan(quick: quick) {
            progress("running bench \(name)…")
            let arguments = ["bench", name, "--json"] + extra
            let (termination, output) = try ChildProcess.output(of: conch, arguments: arguments)
            guard termination == .exited(0) else {
                throw Failure(description: "`conch \(arguments.joined(separator: " "))` failed (\(termination))")
            }
            guard let object = try? JSONSerialization.jsonObject(with: Data(output)) as? [String: Any] else {
                let text = String(decoding: output.prefix(200), as: UTF8.self)
                throw Failure(description: "bench \(name) printed no JSON object: \(text)")
            }
            results.append((name, object))
        }
        return results
    }

    /// One JSON object keyed by benchmark, keys sorted.
    public static func json(_ results: [(name: String, figures: [String: Any])]) throws -> String {
        let object = Dictionary(uniqueKeysWithValues: results.map { ($0.name, $0.figures as Any) })
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// A table: benchmark, figure, value. A figure measured in interleaved pairs
    /// (a ``Spread``'s object) reads "median (min–max)".
    public static func table(_ results: [(name: String, figures: [String: Any])]) -> String {
        var lines = ["benchmark  figure                              value: median (min–max) over the pairs"]
        for (name, figures) in results {
            for key in figures.keys.sorted() {
                let value = figures[key].map(formatted) ?? ""
                lines.append(
                    name.padding(toLength: 10, withPad: " ", startingAt: 0) + " "
                        + key.padding(toLength: 35, withPad: " ", startingAt: 0) + " " + value
                )
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Integers as they are; other numbers with at most two decimals; a spread
    /// as "median (min–max)".
    static func formatted(_ value: Any) -> String {
        if let spread = value as? [String: Any], let median = spread["median"], let low = spread["min"],
            let high = spread["max"]
        {
            return "\(formatted(median)) (\(formatted(low))–\(formatted(high)))"
        }
        guard let number = value as? NSNumber, !(value is Bool) else { return "\(value)" }
        let double = number.doubleValue
        if double == double.rounded(), abs(double) < 1e15 { return String(Int64(double)) }
        return String(format: "%.2f", double)
    }
}
