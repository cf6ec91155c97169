//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import FuzzHarnesses
import Testing

/// Replays every input the fuzzer ever crashed on (`FuzzTesting/FailCases/`) and
/// the seed corpus, so a fixed crash stays fixed.
@Suite("Fuzz replay")
struct FuzzReplayTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzTesting")

    static func inputs(_ folder: String) -> [URL] {
        let directory = root.appendingPathComponent(folder)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { directory.appendingPathComponent($0) }
    }

    /// Each fuzz target's folder name and harness.
    static let harnesses: [(name: String, run: @Sendable (UnsafeRawBufferPointer) -> Void)] = [
        ("xenstore", XenstoreFuzzHarness.run), ("consolering", ConsoleRingFuzzHarness.run),
        ("xenstorering", XenstoreRingFuzzHarness.run), ("hypervisorrequest", HypervisorRequestFuzzHarness.run),
        ("xlconfig", XLConfigFuzzHarness.run),
    ]

    @Test(arguments: harnesses.map(\.name))
    func keptInputsRunCleanly(_ target: String) throws {
        let run = try #require(Self.harnesses.first { $0.name == target }?.run)
        let files = Self.inputs("FailCases/\(target)") + Self.inputs("Corpus/\(target)")
        #expect(!files.isEmpty, "the seed corpus of \(target) is missing: nothing would be replayed")
        for file in files {
            let data = try Data(contentsOf: file)
            data.withUnsafeBytes { run($0) }
        }
    }
}
