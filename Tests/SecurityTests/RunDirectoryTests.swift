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

#if canImport(Glibc)
import Glibc
#endif

/// The run directory cannot be squatted by another local user.
@Suite("hostile local users: the run directory")
struct RunDirectoryTests {
    @Test func aDirectoryWritableByOthersIsRefused() throws {
        let scratch = try ScratchDirectory(prefix: "conch-squat")
        defer { scratch.remove() }
        let run = scratch.path + "/run"
        mkdir(run, 0o777)
        chmod(run, 0o777)
        #expect(throws: RunDirectoryError.self) { try RunDirectory(path: run).create() }
        let up = try ConchExecutable.run(["up", "--detach", "--run-dir", run])
        #expect(up.status != 0)
        #expect(up.stderr.contains("is writable by others"), "\(up.stderr)")
    }

    @Test func aSymbolicLinkIsRefused() throws {
        let scratch = try ScratchDirectory(prefix: "conch-squat")
        defer { scratch.remove() }
        let real = scratch.path + "/real"
        mkdir(real, 0o700)
        symlink(real, scratch.path + "/link")
        #expect(throws: RunDirectoryError.self) { try RunDirectory(path: scratch.path + "/link").create() }
        let list = try ConchExecutable.run(["list", "--run-dir", scratch.path + "/link"])
        #expect(list.status != 0)
        #expect(list.stderr.contains("is a symbolic link"), "\(list.stderr)")
    }

    /// Another user created the directory first (possible only as root here).
    @Test(.enabled(if: geteuid() == 0, "changing a directory's owner needs root"))
    func aDirectoryOwnedBySomeoneElseIsRefused() throws {
        let scratch = try ScratchDirectory(prefix: "conch-squat")
        defer { scratch.remove() }
        let run = scratch.path + "/run"
        mkdir(run, 0o700)
        chown(run, 1_999_999_999, 1_999_999_999)
        #expect(throws: RunDirectoryError.self) { try RunDirectory(path: run).create() }
        let up = try ConchExecutable.run(["up", "--detach", "--run-dir", run])
        #expect(up.stderr.contains("belongs to uid 1999999999"), "\(up.stderr)")
    }

    /// A pid file planted as a symbolic link is replaced, not followed.
    @Test func pidFilesAreNotWrittenThroughLinks() throws {
        let scratch = try ScratchDirectory(prefix: "conch-squat")
        defer { scratch.remove() }
        let target = scratch.path + "/target"
        try "untouched\n".write(toFile: target, atomically: true, encoding: .utf8)
        symlink(target, scratch.path + "/daemon.pid")
        try PidFile(path: scratch.path + "/daemon.pid").write(pid: 42)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "untouched\n")
        #expect(PidFile(path: scratch.path + "/daemon.pid").read() == 42)
    }
}
