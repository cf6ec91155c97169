//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation

/// Finds the built `conch` binary for tests that run it as a user would.
public enum ConchExecutable {
    public struct NotFound: Error, CustomStringConvertible {
        public let searched: [String]
        public var description: String {
            "the executable was not found (looked at \(searched.joined(separator: ", "))); "
                + "run `swift build` first (for conch, CONCH_EXECUTABLE may name it)"
        }
    }

    /// `$CONCH_EXECUTABLE`, else `conch` beside the running test bundle (SwiftPM
    /// builds every product into the same directory as the tests).
    public static func path() throws -> String {
        try find("conch", explicit: ProcessInfo.processInfo.environment["CONCH_EXECUTABLE"])
    }

    /// `conch-test-guest` (the tests' scripted guest kernels), beside `conch`.
    public static func testGuestPath() throws -> String {
        try find("conch-test-guest", explicit: nil)
    }

    private static func find(_ name: String, explicit: String?) throws -> String {
        var candidates: [String] = []
        if let explicit { candidates.append(explicit) }
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = me.deletingLastPathComponent()
        // Inside an .xctest bundle directory on some platforms; walk up a little.
        for _ in 0..<3 {
            candidates.append(directory.appendingPathComponent(name).path)
            directory = directory.deletingLastPathComponent()
        }
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw NotFound(searched: candidates)
    }

    /// Runs conch with `arguments`, returning its exit status and output.
    public static func run(
        _ arguments: [String],
        environment: [String: String]? = nil,
        input: String? = nil,
        currentDirectory: String? = nil
    ) throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        try runProgram(
            try path(),
            arguments,
            environment: environment,
            input: input,
            currentDirectory: currentDirectory
        )
    }
}

/// A value behind a lock, for handing results between threads in tests.
public final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    public init(_ value: Value) { stored = value }
    public var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
