//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// Where a console's nodes live in xenstore (`docs/misc/console.txt`, libxl's
/// `libxl__device_console_add`), in one place for every writer and reader.
///
/// Trust (XSA-178): a domain owns its `device/console/<n>` directories and can
/// write anything there, including a `backend` node naming any path. A backend
/// or a dom0 tool therefore never takes a path from a frontend directory: it
/// derives the frontend path from the domid and devid, finds devices in its own
/// backend tree (which only dom0 writes) or in the toolstack's `/libxl` copy, and
/// takes the backend domid by parsing the backend path, not from `backend-id`.
public enum ConsoleLayout {
    /// A domain's home, `/local/domain/<d>`.
    public static func home(_ domid: DomID) -> String { "/local/domain/\(domid.rawValue)" }

    /// Console 0's frontend, `/local/domain/<d>/console`, or a secondary
    /// console's, `/local/domain/<d>/device/console/<devid>`.
    public static func frontend(_ domid: DomID, devid: Int) -> String {
        devid == 0 ? "\(home(domid))/console" : "\(devices(domid))/\(devid)"
    }

    /// A domain's secondary consoles, `/local/domain/<d>/device/console` (guest-owned).
    public static func devices(_ domid: DomID) -> String { "\(home(domid))/device/console" }

    /// The backend's directory for every console of `domid`,
    /// `/local/domain/<b>/backend/console/<d>` (dom0-owned).
    public static func backends(of domid: DomID, backend: DomID) -> String {
        "\(home(backend))/backend/console/\(domid.rawValue)"
    }

    /// One console's backend directory, `/local/domain/<b>/backend/console/<d>/<devid>`.
    public static func backend(of domid: DomID, devid: Int, backend: DomID) -> String {
        "\(backends(of: domid, backend: backend))/\(devid)"
    }

    /// The toolstack's dom0-only copy of a domain's consoles, `/libxl/<d>/device/console`.
    public static func toolstackCopies(_ domid: DomID) -> String { "/libxl/\(domid.rawValue)/device/console" }

    /// One console's toolstack copy, `/libxl/<d>/device/console/<devid>`.
    public static func toolstackCopy(_ domid: DomID, devid: Int) -> String { "\(toolstackCopies(domid))/\(devid)" }

    /// The device model's directory for `domid`, `/local/domain/<b>/device-model/<d>`
    /// (dom0-owned; libxl waits for its `state` to read `running`).
    public static func deviceModel(of domid: DomID, backend: DomID) -> String {
        "\(home(backend))/device-model/\(domid.rawValue)"
    }

    /// Written by Conch's device model (`conch-device-model`, in place of QEMU):
    /// the domain's `ioemu` consoles, its channels, are consoled's to serve.
    /// Without it they belong to the domain's QEMU, and consoled leaves them alone.
    public static func consoleHandoff(of domid: DomID, backend: DomID) -> String {
        "\(deviceModel(of: domid, backend: backend))/conch-consoles"
    }

    /// Written by conch consoled when it starts (dom0-only): `1` if it marks rings
    /// CONNECTED, `0` if it runs with `--legacy-flag` and never touches the flag.
    /// The toolstack reads it to warn before it builds a DISCONNECTED page that
    /// such a backend would leave DISCONNECTED for ever.
    public static let consoledSetsFlag = "/tool/conch/consoled/sets-connection-flag"

    /// A backend path taken apart: `/local/domain/<b>/backend/console/<d>/<devid>`
    /// exactly, numbers in decimal without leading zeros; nil for anything else.
    public static func parseBackend(_ path: String) -> (backend: DomID, domid: DomID, devid: Int)? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 8, parts[0].isEmpty, parts[1] == "local", parts[2] == "domain", parts[4] == "backend",
            parts[5] == "console", let backend = decimal(parts[3]), let domid = decimal(parts[6]),
            let devid = decimal(parts[7]), backend < UInt32(DomID.firstReserved.rawValue),
            domid < UInt32(DomID.firstReserved.rawValue)
        else { return nil }
        return (DomID(UInt16(backend)), DomID(UInt16(domid)), Int(devid))
    }

    private static func decimal(_ text: Substring) -> UInt32? {
        guard !text.isEmpty, text.utf8.allSatisfy({ (48...57).contains($0) }), text == "0" || text.first != "0" else {
            return nil
        }
        return UInt32(text)
    }
}
