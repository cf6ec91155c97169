//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import DeviceModel
import Logging
import UnixSignals

/// `conch device-model QEMU-ARGUMENTS…`, also run as `conch-device-model` (a link
/// to conch: libxl passes QEMU's arguments to the binary xl.cfg names, with no
/// room for a subcommand).
struct DeviceModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device-model",
        abstract: "Stand in for QEMU as a PV guest's device model: consoled serves its channels.",
        discussion: """
            libxl starts a device model for every PV guest with channels. Point it here instead \
            of QEMU, in the guest's xl.cfg:

              device_model_override = "/usr/lib/conch/conch-device-model"

            (a symbolic link to conch). It takes libxl's QEMU command line (-xen-domid, -chardev, \
            -mon, -machine xenpv, …), hands the guest's channels to conch consoled, reports itself \
            running, answers libxl's QMP queries, and exits when libxl stops it. Only PV guests \
            (-machine xenpv); HVM guests need QEMU.
            """
    )

    /// The name libxl runs it by (a link to conch).
    static let linkName = "conch-device-model"

    @OptionGroup var logging: LoggingOptions

    @Argument(parsing: .captureForPassthrough, help: "QEMU's arguments, as libxl passes them.")
    var qemuArguments: [String] = []

    func run() async throws {
        let logger = logging.makeLogger(label: "conch.device-model")
        // A refusal is libxl's to log: "device model did not start", with our reason in its log.
        let arguments = try DeviceModelArguments(parsing: qemuArguments)
        let shim = DeviceModelShim(arguments: arguments, logger: logger)
        try await shim.run {
            // libxl stops a device model with SIGHUP (libxl__kill_xs_path).
            for await signal in await UnixSignalsSequence(trapping: .sighup, .sigterm, .sigint) {
                logger.info("stopping on \(signal)")
                return
            }
        }
    }
}
