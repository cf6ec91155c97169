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

@Suite("supervision: restarts with back-off, never given up")
struct SupervisionTests {
    @Test func aHealthyDaemonIsRestartedAtOnceAYoungOneWaitsLongerEachTime() {
        var backoff = RestartBackoff()
        #expect(backoff.died(after: .seconds(60)) == .zero, "ran a minute: restart now")
        #expect(backoff.died(after: .seconds(1)) == .milliseconds(500))
        #expect(backoff.died(after: .seconds(1)) == .seconds(1))
        #expect(backoff.restartFailed() == .seconds(2))
        #expect(backoff.restartFailed() == .seconds(4))
        for _ in 0..<20 { _ = backoff.restartFailed() }
        #expect(backoff.delay == .seconds(30), "capped")
        #expect(backoff.died(after: .seconds(11)) == .zero, "a healthy run forgets the failures")
    }

    /// `conch up` keeps trying a daemon whose restart failed, and it comes back
    /// once whatever stopped it is fixed.
    @Test func aFailedRestartIsTriedAgain() throws {
        let stack = try UpStack()
        let log = stack.path + "/logs/consoled.log"
        let pid = try #require(PidFile(path: stack.path + "/consoled.pid").read(), "no consoled pid file")
        // Its log path made a directory: the supervisor cannot start consoled.
        try FileManager.default.moveItem(atPath: log, toPath: log + ".before")
        try FileManager.default.createDirectory(atPath: log, withIntermediateDirectories: false)
        kill(pid, SIGKILL)
        var upLog = ""
        #expect(
            stack.eventually(seconds: 30) {
                upLog = (try? String(contentsOfFile: stack.path + "/logs/up.log", encoding: .utf8)) ?? ""
                return upLog.components(separatedBy: "consoled: restart failed").count > 2
                    && upLog.contains("trying again in")
            },
            "\(upLog)"
        )
        try FileManager.default.removeItem(atPath: log)
        #expect(
            stack.eventually(seconds: 60) {
                upLog = (try? String(contentsOfFile: stack.path + "/logs/up.log", encoding: .utf8)) ?? ""
                return upLog.contains("consoled restarted")
                    && UnixSocketPath.isListening(stack.path + "/consoled.sock")
            },
            "\(upLog)"
        )
    }
}
