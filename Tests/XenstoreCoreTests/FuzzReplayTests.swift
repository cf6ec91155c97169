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

    @Test func keptInputsRunCleanly() throws {
        let files = Self.inputs("FailCases/xenstore") + Self.inputs("Corpus/xenstore")
        #expect(!files.isEmpty, "the seed corpus is missing: nothing would be replayed")
        for file in files {
            let data = try Data(contentsOf: file)
            data.withUnsafeBytes { XenstoreFuzzHarness.run($0) }
        }
    }
}
