//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Hypervisors

@main
struct Conch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conch",
        abstract: "Xen PV consoles and channels, with a simulated hypervisor, in Swift.",
        discussion: """
            Conch implements the Xen PV console and PV channel stack: xenstored, the console \
            backend, the guest frontend and the toolstack. Its simulated hypervisor runs the \
            whole stack on an ordinary Linux machine with real processes, shared memory, \
            ptys and Unix sockets.
            """,
        version: ConchVersion.string,
        subcommands: [
            Up.self, Down.self, Create.self, List.self, ConsoleCommand.self, Destroy.self, Shutdown.self,
            ChannelListCommand.self, ChannelAttach.self, ChannelDetach.self, Demo.self,
            Dmesg.self, Store.self, Stats.self, Bench.self,
            Hypervisor.self, Xenstored.self, Consoled.self, GuestKernel.self, Version.self, RingPeerCommand.self,
            BenchPeer.self, ConsoledKeeper.self, DeviceModelCommand.self, ConsoleFlagCommand.self,
            ConsoleRelease.self, WebCommand.self, StatusCommand.self,
        ]
    )

    /// Run as `conch-device-model` (libxl's device_model_override names a binary,
    /// not a subcommand), conch is the device model.
    static func main() async {
        let invokedAs = CommandLine.arguments.first?.split(separator: "/").last.map(String.init)
        if invokedAs == DeviceModelCommand.linkName {
            await main(["device-model"] + CommandLine.arguments.dropFirst())
        } else {
            await main(nil)
        }
    }
}

enum ConchVersion {
    static let string = "0.1.0"
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print Conch's version and which hypervisors this build can serve."
    )

    func run() {
        print("conch \(ConchVersion.string)")
        print("simulated hypervisor: built in")
        print("real Xen: \(HypervisorFactory.realXenBuiltIn ? "built in" : "not built (no libxen-dev at build time)")")
        if HypervisorFactory.hostIsXenDom0 { print("this host: a Xen dom0") }
    }
}
