//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// What libxl asks of a device model for a PV guest, read from the QEMU command
/// line it passes (`libxl__build_device_model_args_new` for `-machine xenpv`):
///
///     -xen-domid 1 -no-shutdown
///     -chardev socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-1,server=on,wait=off
///     -mon chardev=libxl-cmd,mode=control
///     -chardev socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-1,server=on,wait=off
///     -mon chardev=libxenstat-cmd,mode=control
///     -chardev pty,id=libxl-channel1
///     -chardev socket,id=libxl-channel2,path=/run/agent.sock,server=on,wait=off
///     -nodefaults -no-user-config -xen-attach -name g1 -vnc none -display none
///     -nographic -machine xenpv -m 128
///
/// With `dm_restrict` libxl opens the QMP socket itself and passes it as
/// `fd=N`, adding `-S` (start stopped; QMP `cont` runs). Options that do not
/// matter to a PV console device model are accepted and ignored; a machine
/// other than `xenpv` is refused, since only PV guests can do without QEMU.
public struct DeviceModelArguments: Hashable, Sendable {
    /// Where a QMP monitor listens.
    public enum Monitor: Hashable, Sendable {
        case path(String)
        /// A listening socket libxl opened and passed down.
        case descriptor(Int32)
    }

    /// A `-chardev` for one of the guest's channels (`libxl-channel<devid>`).
    public struct Channel: Hashable, Sendable {
        public enum Connection: Hashable, Sendable {
            case pty
            case socket(path: String)
        }
        public var devid: Int
        public var connection: Connection
        public init(devid: Int, connection: Connection) {
            self.devid = devid
            self.connection = connection
        }
    }

    public var domid: DomID
    public var name: String?
    /// QMP monitors (`-mon chardev=…,mode=control`), libxl's and libxenstat's.
    public var monitors: [Monitor]
    public var channels: [Channel]
    /// `-S`: report `prelaunch` until QMP `cont`.
    public var startStopped: Bool

    public struct Invalid: Error, Hashable, Sendable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Options that take a value and that a PV console device model ignores.
    static let ignoredWithValue: Set<String> = [
        "-name", "-vnc", "-display", "-m", "-k", "-serial", "-parallel", "-device", "-drive", "-netdev", "-boot",
        "-smp", "-cpu", "-global", "-object", "-runas", "-chroot", "-incoming", "-trace",
        "-D", "-d", "-sandbox", "-vga", "-spice", "-usb", "-usbdevice", "-soundhw", "-acpitable", "-smbios",
        "-append", "-kernel", "-initrd", "-option-rom", "-rtc", "-accel", "-uuid",
    ]
    static let ignoredFlags: Set<String> = [
        "-no-shutdown", "-nodefaults", "-no-user-config", "-xen-attach", "-nographic", "-no-reboot",
        "-no-acpi", "-no-hpet", "-daemonize", "-xen-domid-restrict",
    ]

    public init(parsing arguments: [String]) throws(Invalid) {
        var domid: DomID?
        var name: String?
        var chardevs: [String: [String: String]] = [:]
        var chardevKinds: [String: String] = [:]
        var monitorIDs: [String] = []
        var startStopped = false
        var index = 0
        func value(_ option: String) throws(Invalid) -> String {
            index += 1
            guard index < arguments.count else { throw Invalid("\(option) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            let argument = arguments[index]
            switch argument {
            case "-xen-domid":
                let text = try value(argument)
                guard let number = UInt16(text), number > 0, number < DomID.firstReserved.rawValue else {
                    throw Invalid("-xen-domid: not a guest's domain id: '\(text)'")
                }
                domid = DomID(number)
            case "-name":
                name = try value(argument).split(separator: ",").first.map(String.init)
            case "-machine", "-M":
                let machine = try value(argument)
                let type = machine.split(separator: ",").first.map(String.init) ?? ""
                guard type == "xenpv" || type == "type=xenpv" else {
                    throw Invalid(
                        "-machine \(machine): Conch's device model serves PV guests only (xenpv); "
                            + "use QEMU for HVM guests"
                    )
                }
            case "-chardev":
                let spec = try value(argument)
                let fields = spec.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                var options: [String: String] = [:]
                for field in fields.dropFirst() {
                    let pair = field.split(separator: "=", maxSplits: 1).map(String.init)
                    options[pair[0]] = pair.count > 1 ? pair[1] : ""
                }
                guard let id = options["id"], !id.isEmpty else { throw Invalid("-chardev \(spec): no id") }
                chardevs[id] = options
                chardevKinds[id] = fields.first ?? ""
            case "-mon":
                let spec = try value(argument)
                var options: [String: String] = [:]
                for field in spec.split(separator: ",") {
                    let pair = field.split(separator: "=", maxSplits: 1).map(String.init)
                    options[pair[0]] = pair.count > 1 ? pair[1] : ""
                }
                guard let chardev = options["chardev"] else { throw Invalid("-mon \(spec): no chardev") }
                if options["mode", default: "readline"] == "control" { monitorIDs.append(chardev) }
            case "-S":
                startStopped = true
            default:
                if Self.ignoredFlags.contains(argument) {
                    break
                } else if Self.ignoredWithValue.contains(argument) {
                    _ = try value(argument)
                } else {
                    throw Invalid("unsupported option \(argument) (Conch's device model serves xenpv guests' consoles)")
                }
            }
            index += 1
        }
        guard let domid else { throw Invalid("-xen-domid is required") }
        self.domid = domid
        self.name = name
        self.startStopped = startStopped

        var monitors: [Monitor] = []
        for id in monitorIDs {
            guard let options = chardevs[id], chardevKinds[id] == "socket" else {
                throw Invalid("-mon chardev=\(id): no socket chardev with that id")
            }
            if let path = options["path"], path.hasPrefix("/") {
                monitors.append(.path(path))
            } else if let text = options["fd"], let fd = Int32(text), fd > 2 {
                monitors.append(.descriptor(fd))
            } else {
                throw Invalid("-chardev id=\(id): a QMP socket needs an absolute path or an fd")
            }
        }
        self.monitors = monitors

        var channels: [Channel] = []
        for (id, options) in chardevs {
            guard id.hasPrefix("libxl-channel") else { continue }
            guard let devid = Int(id.dropFirst("libxl-channel".count)), devid >= 0 else {
                throw Invalid("-chardev id=\(id): not libxl-channel<devid>")
            }
            switch chardevKinds[id] {
            case "pty":
                channels.append(Channel(devid: devid, connection: .pty))
            case "socket":
                guard let path = options["path"], path.hasPrefix("/") else {
                    throw Invalid("-chardev id=\(id): a socket channel needs an absolute path")
                }
                channels.append(Channel(devid: devid, connection: .socket(path: path)))
            default:
                throw Invalid("-chardev id=\(id): a channel is a pty or a socket")
            }
        }
        self.channels = channels.sorted { $0.devid < $1.devid }
    }
}
