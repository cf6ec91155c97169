//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import ConchBench
import Foundation
import SystemExtras
import Toolstack
import ToolstackRuntime
import XenABI

#if canImport(Glibc)
import Glibc
#endif

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A one-minute tour: guests with channels, provisioning over a channel, late backends.",
        discussion: """
            Starts the host stack in a fresh temporary run directory, creates two guests with \
            channels from configuration files it writes (and shows), provisions one over a socket \
            channel with examples/provisioning, exchanges messages with the other, shows their \
            boot logs, then starts two guests while consoled is down (the new frontend never \
            stalls; the legacy one waits and loses nothing). Cleans up everything it started and \
            exits 0 only if every step succeeded. Example:

              swift run conch demo
            """
    )

    @Flag(help: "Keep the run directory (configs, logs) instead of removing it.")
    var keep = false

    @Flag(help: "At the end, keep the stack and the web console up until Enter.")
    var web = false

    func run() async throws {
        // `conch demo | head`: a closed pipe must not kill the demo before it tears
        // down the daemons it started; writes fail with EPIPE instead.
        signal(SIGPIPE, SIG_IGN)
        let runner = try DemoRunner(keep: keep, serveWeb: web)
        do {
            try await runner.run()
            runner.cleanUp()
        } catch {
            runner.say("FAILED: \(error)")
            runner.cleanUp()
            throw ExitCode.failure
        }
    }
}
