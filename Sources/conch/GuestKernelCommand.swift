//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import ConsoleCore
import Foundation
import GuestFrontend
import Hypervisors
import XenSim

struct GuestKernel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guest-kernel",
        abstract: "The guest side: run by the hypervisor for a domain; runs PROGRAM on console 0.",
        discussion: """
            Brings up the console 0 frontend and xenbus, connects every secondary console and \
            channel, exposes them as $CONCH_GUEST_DEV/hvc<N> and $CONCH_GUEST_DEV/xen-channel/<name>, \
            then runs PROGRAM with console 0 as its stdin, stdout and stderr. The domain shuts down \
            when PROGRAM exits. The toolstack starts it. Example of what it runs:

              conch guest-kernel -- /usr/bin/my-agent --verbose
            """
    )

    @Option(
        help: """
            How the frontend treats the console connection flag: new (the seed's: the hypervisor \
            console while disconnected, replayed on connect), linux71 (hvc_xen since Linux 7.1: \
            writes while disconnected are dropped) or legacy (hvc_xen before 7.1: the flag is ignored).
            """
    )
    var frontend: FrontendMode = .flagAware

    @Argument(parsing: .captureForPassthrough, help: "The program and its arguments.")
    var command: [String] = []

    func run() async throws {
        // Everything is passed through to PROGRAM, so --help has to be caught here.
        if command.first == "--help" || command.first == "-h" {
            print(Self.helpMessage())
            return
        }
        var words = command
        if words.first == "--" { words.removeFirst() }
        guard let program = words.first else {
            throw ValidationError("no program given: conch guest-kernel -- PROGRAM")
        }
        let kernel = try GuestFrontend.GuestKernel(
            options: .init(
                program: program,
                arguments: Array(words.dropFirst()),
                mode: frontend
            ),
            hypervisor: try HypervisorFactory.guest()
        )
        let status = try await kernel.run()
        throw ExitCode(status)
    }
}

extension FrontendMode: ExpressibleByArgument {}
