//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenRing

/// The guest's first channel (`device/console/1`), the seed's provisioning
/// example: the xenbus handshake a console frontend does (a ring page granted to
/// the backend, an unbound event channel, `ring-ref`, `port`, state Initialised,
/// then the backend's Connected), a hello naming the channel, then an answer to
/// every line dom0 sends. The ring is a console ring, as for console 0.
struct ChannelFrontend {
    let ring: ConsoleRing<GuestPage>
    let port: UInt32
    let name: [UInt8]
    var line: [UInt8] = []

    /// The grant reference the ring goes out under: the first one not reserved.
    static let ringGrant = GrantRef.firstUnreserved

    /// Connects `device/console/<devid>`; nil (and why, on the console) if the
    /// domain has no such channel or the backend never connects.
    static func connect(devid: Int, store: inout Store, console: inout ConsoleFrontend) -> ChannelFrontend? {
        let home = bytes("device/console/") + decimal(devid)
        guard let backend = store.read(home + bytes("/backend")),
            let backendID = store.read(home + bytes("/backend-id")).flatMap(decimalValue),
            let remote = UInt16(exactly: backendID)
        else { return nil }
        let name = store.read(home + bytes("/name")) ?? bytes("(unnamed)")
        let page = conch_channel_page()
        guard Xen.grant(ringGrant, of: Xen.machineFrame(of: page), to: DomID(remote)),
            let port = Xen.allocatePort(for: DomID(remote))
        else {
            console.write(bytes("conch-pv-guest: cannot grant the channel's ring or allocate its port\n"))
            return nil
        }
        _ = store.write(home + bytes("/ring-ref"), decimal(Int(ringGrant.rawValue)))
        _ = store.write(home + bytes("/port"), decimal(Int(port)))
        _ = store.write(home + bytes("/state"), decimal(Int(XenbusState.initialised.rawValue)))
        // The backend (consoled) maps the ring and says Connected.
        var rounds = 0
        while store.read(backend + bytes("/state")) != decimal(Int(XenbusState.connected.rawValue)) {
            rounds += 1
            if rounds > 600 {
                console.write(bytes("conch-pv-guest: the channel's backend never connected\n"))
                return nil
            }
            Xen.wait(ports: [port], nanoseconds: 100_000_000)
        }
        _ = store.write(home + bytes("/state"), decimal(Int(XenbusState.connected.rawValue)))
        let channel = ChannelFrontend(ring: ConsoleRing(memory: GuestPage(page)), port: port, name: name)
        channel.send(bytes("hello from conch-pv-guest on ") + name + bytes("\n"))
        console.write(bytes("conch-pv-guest: channel ") + name + bytes(" connected\n"))
        return channel
    }

    /// Writes all of `bytes`, waiting for room (a channel is lossless).
    func send(_ bytes: [UInt8]) {
        _ = writeAll(bytes, to: ring.frontend.output, port: port, rounds: nil)
    }

    /// Answers every complete line received so far with `echo:<line>`.
    mutating func serve() {
        guard let input = try? ring.frontend.input.read(maxCount: 1024), !input.isEmpty else { return }
        Xen.notify(port)
        for byte in input {
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                if !line.isEmpty { send(bytes("echo:") + line + bytes("\n")) }
                line = []
            } else if line.count < 1024 {
                line.append(byte)
            }
        }
    }
}
