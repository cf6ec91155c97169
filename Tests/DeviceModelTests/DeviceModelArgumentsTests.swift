//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import DeviceModel
import Testing
import XenABI

@Suite("DeviceModelArguments")
struct DeviceModelArgumentsTests {
    /// The command line libxl 4.17 gave Conch's device model in the rig's
    /// `channels` scenario (serial log), word for word.
    static let libxlCommandLine =
        """
        -xen-domid 1 -no-shutdown \
        -chardev socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-1,server=on,wait=off \
        -mon chardev=libxl-cmd,mode=control \
        -chardev socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-1,server=on,wait=off \
        -mon chardev=libxenstat-cmd,mode=control \
        -chardev pty,id=libxl-channel0 \
        -chardev socket,id=libxl-channel1,path=/run/rig.sock,server=on,wait=off \
        -chardev pty,id=libxl-channel2 \
        -nodefaults -no-user-config -xen-attach -name g1 -vnc none -display none -nographic -machine xenpv -m 128
        """.split(separator: " ").map(String.init)

    @Test func libxlsCommandLine() throws {
        let parsed = try DeviceModelArguments(parsing: Self.libxlCommandLine)
        #expect(parsed.domid == DomID(1))
        #expect(parsed.name == "g1")
        #expect(!parsed.startStopped)
        #expect(parsed.monitors == [.path("/var/run/xen/qmp-libxl-1"), .path("/var/run/xen/qmp-libxenstat-1")])
        #expect(
            parsed.channels == [
                .init(devid: 0, connection: .pty), .init(devid: 1, connection: .socket(path: "/run/rig.sock")),
                .init(devid: 2, connection: .pty),
            ]
        )
    }

    /// With dm_restrict libxl opens the QMP socket itself and starts the model stopped.
    @Test func restrictedStartPassesADescriptorAndStartsStopped() throws {
        let parsed = try DeviceModelArguments(parsing: [
            "-xen-domid", "7", "-chardev", "socket,id=libxl-cmd,fd=9,server=on,wait=off", "-mon",
            "chardev=libxl-cmd,mode=control", "-S", "-xen-domid-restrict", "-runas", "1000:1000", "-machine", "xenpv",
        ])
        #expect(parsed.domid == DomID(7))
        #expect(parsed.monitors == [.descriptor(9)])
        #expect(parsed.startStopped)
        #expect(parsed.channels.isEmpty)
    }

    /// A readline monitor is not QMP and is not served.
    @Test func onlyControlMonitorsAreQMP() throws {
        let parsed = try DeviceModelArguments(parsing: [
            "-xen-domid", "3", "-chardev", "socket,id=human,path=/run/h.sock", "-mon", "chardev=human",
        ])
        #expect(parsed.monitors.isEmpty)
    }

    @Test(arguments: [
        (["-machine", "xenpv"], "-xen-domid is required"),
        (["-xen-domid", "0"], "not a guest's domain id: '0'"),
        (["-xen-domid", "32752"], "not a guest's domain id: '32752'"),
        (["-xen-domid", "1x"], "not a guest's domain id: '1x'"),
        (["-xen-domid"], "-xen-domid needs a value"),
        (["-xen-domid", "2", "-machine", "xenfv,max-ram-below-4g=1G"], "serves PV guests only"),
        (["-xen-domid", "2", "-monitor", "stdio"], "unsupported option -monitor"),
        (["-xen-domid", "2", "-chardev", "socket,path=/x"], "no id"),
        (["-xen-domid", "2", "-mon", "chardev=nowhere,mode=control"], "no socket chardev with that id"),
        (
            [
                "-xen-domid", "2", "-chardev", "socket,id=libxl-cmd,path=relative", "-mon",
                "chardev=libxl-cmd,mode=control",
            ],
            "needs an absolute path or an fd"
        ),
        (["-xen-domid", "2", "-chardev", "socket,id=libxl-channel1,path=rel.sock"], "needs an absolute path"),
        (["-xen-domid", "2", "-chardev", "file,id=libxl-channel1,path=/tmp/x"], "a channel is a pty or a socket"),
        (["-xen-domid", "2", "-chardev", "pty,id=libxl-channelX"], "not libxl-channel<devid>"),
    ])
    func refusals(arguments: [String], message: String) {
        #expect {
            try DeviceModelArguments(parsing: arguments)
        } throws: { error in
            "\(error)".contains(message)
        }
    }
}
