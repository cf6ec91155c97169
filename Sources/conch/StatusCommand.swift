//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Foundation
import HostSupervision
import SystemExtras
import ToolstackRuntime

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Say whether the host stack is healthy: each daemon's pid and whether its socket answers.",
        discussion: """
            Exits 0 when every daemon answers a request, 1 otherwise (with what to do). Examples:

              conch status
              conch status --json && echo healthy
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let runDirectory = runDirectoryOptions.runDirectory
        let status = await HostStatus.probe(runDirectory, supervisorPidFile: HostSupervisor.pidFile(runDirectory))
        if json {
            print(try JSONOutput.string(status))
        } else {
            let supervisor = status.supervisorPid.map { "supervised by `conch up` (pid \($0))" } ?? "not supervised"
            print("Host stack in \(status.runDirectory): \(status.healthy ? "healthy" : "NOT healthy"), \(supervisor)")
            for daemon in status.daemons {
                let pid = daemon.pid.map { "pid \($0)" } ?? "-"
                print(
                    "  " + daemon.name.padding(toLength: 16, withPad: " ", startingAt: 0)
                        + (daemon.healthy ? "ok    " : "DOWN  ")
                        + pid.padding(toLength: 11, withPad: " ", startingAt: 0)
                        + daemon.detail
                )
            }
            print("Guests: " + (status.guests.isEmpty ? "none" : status.guests.joined(separator: ", ")))
        }
        guard status.healthy else {
            let fix =
                status.supervisorPid == nil
                ? "start it with `conch up --detach`"
                : "`conch up` restarts dead daemons; see \(runDirectory.logDirectory)"
            FileHandle.standardError.write(Data("conch status: the host stack is not healthy: \(fix)\n".utf8))
            throw ExitCode.failure
        }
    }
}
