//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Foundation
import Hypervisors
import SystemExtras
import XenHypervisor
import XenSim

struct Hypervisor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hypervisor",
        abstract: "Run the simulated hypervisor: domains, pages, grants, event channels, guest processes.",
        discussion: """
            Listens on <run-dir>/hypervisor.sock (mode 0600, the privileged interface, like \
            /dev/xen/privcmd) and writes <run-dir>/hypervisor.pid. Guest programs start when their \
            domain is unpaused; their stdout and stderr go to <run-dir>/logs/guest-<name>.stdio.log. \
            Each guest runs behind a wall: its own user, mount, pid, network and IPC \
            namespaces, the run directory hidden, the host read-only but for /tmp, and — when \
            run as root — a uid of its own (--guest-uid-base + domid). See docs/SECURITY.md. \
            Stops on SIGTERM or SIGINT, destroying every domain. Example:

              conch hypervisor --run-dir /tmp/conch &
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: "Bytes the hypervisor console ring keeps (conch dmesg).")
    var consoleBytes = 1 << 20

    @Option(help: "Bytes of the console ring one domain's lines may fill (default: a quarter of it).")
    var consoleShare: Int?

    @Option(help: "console_io bytes per second a domain may write (burst: 4 seconds' worth).")
    var consoleRate: UInt64 = 16 << 10

    @Option(help: "When run as root, guest d<N> runs as uid and gid <base> + N.")
    var guestUidBase: UInt32 = GuestSandbox.defaultUIDBase

    @Flag(
        help: """
            Run guests as ordinary processes of this user, without namespaces (for machines \
            without user namespaces). Insecure: a guest can then reach the run directory.
            """
    )
    var insecureNoSandbox = false

    func validate() throws {
        guard consoleBytes >= 4096 else { throw ValidationError("--console-bytes must be at least 4096") }
        if let consoleShare, consoleShare < 256 || consoleShare > consoleBytes {
            throw ValidationError("--console-share must be between 256 and --console-bytes (\(consoleBytes))")
        }
        guard consoleRate > 0 else { throw ValidationError("--console-rate must be positive") }
        guard guestUidBase > 0, guestUidBase <= UInt32.max - 65536 else {
            throw ValidationError("--guest-uid-base must be between 1 and \(UInt32.max - 65536)")
        }
    }

    func run() throws {
        let logger = logging.makeLogger(label: "conch.hypervisor")
        let runDirectory = runDirectoryOptions.runDirectory
        raiseDescriptorLimit()
        try runDirectory.create()
        let pidFile = PidFile(path: runDirectory.hypervisorPidFile)
        try pidFile.write()
        defer { pidFile.remove() }
        var sandbox: GuestSandbox?
        if insecureNoSandbox {
            logger.warning("guests run without a sandbox (--insecure-no-sandbox): any guest can reach \(runDirectory)")
        } else {
            sandbox = GuestSandbox.forHost(
                runDirectory: runDirectory,
                environment: ProcessInfo.processInfo.environment,
                uidBase: guestUidBase
            )
        }
        let daemon = SimHypervisorDaemon(
            configuration: .init(
                runDirectory: runDirectory,
                consoleCapacity: consoleBytes,
                consoleShare: consoleShare,
                consoleRate: .init(rate: consoleRate, burst: consoleRate * 4),
                sandbox: sandbox
            ),
            logger: logger
        )
        try daemon.run()
    }
}

struct Dmesg: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the hypervisor console (like xl dmesg): guest console_io output, lines prefixed (d<N>).",
        discussion: "Example: conch dmesg -c"
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @OptionGroup var hypervisorOptions: HypervisorOptions

    @Flag(name: .short, help: "Clear the console ring after printing it.")
    var clear = false

    func run() throws {
        let hypervisor = try HypervisorFactory.privileged(
            hypervisorOptions.backend(runDirectory: runDirectoryOptions.runDirectory)
        )
        let bytes = try hypervisor.readConsole(clear: clear)
        FileHandle.standardOutput.write(Data(bytes))
    }
}
