//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Hypervisors
import ToolstackRuntime
import XenABI
import XenHypervisor
import XenRing

/// Reads or sets console 0's `connection` byte: the step Xen 4.21's builder
/// does for every new domain (the page starts DISCONNECTED), for a toolstack
/// that predates it — run it between `xl create -p` and `xl unpause`.
struct ConsoleFlagCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console-flag",
        abstract: "Print or set console 0's connection flag (connected or disconnected).",
        discussion: """
            Xen 4.21's domain builder marks every new console page DISCONNECTED, so that a \\
            flag-aware guest does not fill a ring nobody services; the backend marks it CONNECTED \\
            once it does. Xen 4.17's builder leaves the page zeroed (CONNECTED). On such a host:

              xl create -p guest.cfg && conch console-flag guest disconnected && xl unpause guest

            Without a value it prints the flag. Dom0 only; the page is found as consoled finds \\
            it (grant 0, else the frame the toolstack recorded).
            """
    )

    enum Value: String, ExpressibleByArgument, CaseIterable {
        case connected
        case disconnected
    }

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @OptionGroup var hypervisorOptions: HypervisorOptions

    @Argument(help: "The domain: a name or a domid.", completion: .domainNames)
    var domain: String

    @Argument(help: "connected or disconnected (omit to print the flag).")
    var value: Value?

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions, hypervisorOptions)
        defer { host.store.close() }
        let target = try await host.guest(domain)
        let page: GuestPage
        do {
            page = try host.hypervisor.mapGrant(target.domid, ref: .console, readOnly: value == nil)
        } catch {
            // The frame libxl recorded, in a node the guest can read but not write.
            let node = ConsoleLayout.frontend(target.domid, devid: 0) + "/ring-ref"
            guard let frame = (try? await host.store.readString(node)).flatMap({ UInt64($0) }) else {
                throw CLIError("cannot map console 0 of \(target.name) (\(error)) and \(node) names no frame")
            }
            page = try host.hypervisor.mapForeign(target.domid, frame: PageFrame(frame), readOnly: value == nil)
        }
        let ring = ConsoleRing(memory: page)
        if let value {
            ring.connection = value == .connected ? .connected : .disconnected
        } else {
            // As a frontend reads it: anything but DISCONNECTED (1) is connected.
            print(ring.connection.isDisconnected ? "disconnected" : "connected")
        }
    }
}
