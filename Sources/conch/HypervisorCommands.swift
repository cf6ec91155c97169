//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Foundation
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
            Stops on SIGTERM or SIGINT, destroying every domain. Example:

              conch hypervisor --run-dir /tmp/conch &
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: "Bytes the hypervisor console ring keeps (conch dmesg).")
    var consoleBytes = 1 << 20

    func validate() throws {
        guard consoleBytes >= 4096 else { throw ValidationError("--console-bytes must be at least 4096") }
    }

    func run() throws {
        let logger = logging.makeLogger(label: "conch.hypervisor")
        let runDirectory = runDirectoryOptions.runDirectory
        raiseDescriptorLimit()
        try runDirectory.create()
        let pidFile = PidFile(path: runDirectory.hypervisorPidFile)
        try pidFile.write()
        defer { pidFile.remove() }
        let daemon = SimHypervisorDaemon(
            configuration: .init(runDirectory: runDirectory, consoleCapacity: consoleBytes),
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

    @Flag(name: .short, help: "Clear the console ring after printing it.")
    var clear = false

    func run() throws {
        let hypervisor = try HypervisorFactory.privileged(.simulated(runDirectoryOptions.runDirectory))
        let bytes = try hypervisor.readConsole(clear: clear)
        FileHandle.standardOutput.write(Data(bytes))
    }
}
