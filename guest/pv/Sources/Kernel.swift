//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import XenABI

/// What xl.cfg's `extra` asks of the kernel: `lines=N` boot lines, the frontend
/// (`frontend=new`, the default; `linux71`, which drops while disconnected;
/// `legacy`, which ignores the flag), and `timeout=S` seconds before it powers
/// off by itself (default 600), and `channel=1` to connect the first channel.
/// Typing `poweroff` at the console powers off too.
struct Options {
    var lines = 0
    var mode = FrontendMode.flagAware
    var modeName: [UInt8] = Array("new".utf8)
    var timeoutSeconds: UInt64 = 600
    /// `channel=1`: connect the first channel (`device/console/1`) and answer on it.
    var channel = false

    init(commandLine: [UInt8]) {
        for word in commandLine.split(separator: UInt8(ascii: " ")) {
            guard let equals = word.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let key = Array(word[..<equals])
            let value = Array(word[(equals + 1)...])
            if key == Array("lines".utf8), let number = decimalValue(value) {
                lines = number
            } else if key == Array("timeout".utf8), let number = decimalValue(value) {
                timeoutSeconds = UInt64(number)
            } else if key == Array("channel".utf8) {
                channel = value == Array("1".utf8)
            } else if key == Array("frontend".utf8) {
                if value == Array("linux71".utf8) {
                    mode = .dropWhileDisconnected
                    modeName = value
                } else if value == Array("legacy".utf8) {
                    mode = .legacy
                    modeName = value
                }
            }
        }
    }
}

func decimalValue(_ digits: [UInt8]) -> Int? {
    guard !digits.isEmpty, digits.count < 10 else { return nil }
    var value = 0
    for digit in digits {
        guard digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9") else { return nil }
        value = value * 10 + Int(digit - UInt8(ascii: "0"))
    }
    return value
}

func decimal(_ value: Int) -> [UInt8] {
    if value == 0 { return [UInt8(ascii: "0")] }
    var digits: [UInt8] = []
    var rest = value < 0 ? -value : value
    while rest > 0 {
        digits.append(UInt8(ascii: "0") + UInt8(rest % 10))
        rest /= 10
    }
    return (value < 0 ? [UInt8(ascii: "-")] : []) + digits.reversed()
}

func bytes(_ text: StaticString) -> [UInt8] {
    // SAFETY: a StaticString's UTF-8 lives in the binary for the whole run.
    Array(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
}

/// The virtual address of a page given its machine frame: Xen's builder maps the
/// whole initial allocation at virtual address 0, page by page in P2M order, and
/// `mfn_list` is that order.
func pageAddress(ofMachineFrame frame: UInt64) -> UnsafeMutableRawPointer? {
    Xen.frameList.firstIndex(of: frame).flatMap { UnsafeMutableRawPointer(bitPattern: UInt($0) << 12) }
}

@_cdecl("conch_pv_main")
public func conchPVMain(_ startInfo: UnsafeRawPointer) -> Never {
    Xen.startInfo = startInfo
    var commandLine: [UInt8] = []
    for index in 0..<PVStartInfo.commandLineSize {
        let byte = Xen.field(PVStartInfo.commandLineOffset + index, as: UInt8.self)
        if byte == 0 { break }
        commandLine.append(byte)
    }
    let options = Options(commandLine: commandLine)
    let timed = Xen.mapSharedInfo()
    let consoleFrame = Xen.field(PVStartInfo.consoleFrameOffset, as: UInt64.self)
    let consolePort = Xen.field(PVStartInfo.consoleEventChannelOffset, as: UInt32.self)
    guard let consolePage = pageAddress(ofMachineFrame: consoleFrame) else {
        _ = bytes("conch-pv-guest: console page not mapped\n").withUnsafeBytes { Xen.consoleWrite($0) }
        Xen.powerOff()
    }
    var console = ConsoleFrontend(page: GuestPage(consolePage), port: consolePort, mode: options.mode)
    let storeFrame = Xen.field(PVStartInfo.storeFrameOffset, as: UInt64.self)
    let storePort = Xen.field(PVStartInfo.storeEventChannelOffset, as: UInt32.self)
    var store = pageAddress(ofMachineFrame: storeFrame).map { Store(page: GuestPage($0), port: storePort) }

    let start = Xen.now()
    console.write(
        bytes("conch-pv-guest: frontend ") + options.modeName + bytes(", ") + decimal(options.lines)
            + bytes(" boot lines, time ") + (timed ? bytes("yes") : bytes("no")) + bytes("\n")
    )
    for line in 1...max(options.lines, 1) where options.lines > 0 {
        console.write(
            bytes("RIG-BOOT ") + decimal(line) + bytes("/") + decimal(options.lines)
                + bytes(" the quick brown fox jumps over the lazy dog\n")
        )
    }
    console.write(bytes("RIG-BOOT-DONE ") + decimal(options.lines) + bytes("\n"))
    let bootNanoseconds = Xen.now() &- start
    // Where dom0 can see it without the console: how the boot went.
    _ = store?.write(bytes("data/rig-boot-ms"), decimal(Int(bootNanoseconds / 1_000_000)))
    _ = store?.write(bytes("data/rig-stall-ms"), decimal(Int(console.stalledNanoseconds / 1_000_000)))
    _ = store?.write(bytes("data/rig-dropped-bytes"), decimal(console.droppedBytes))
    _ = store?.write(bytes("data/rig-console-io"), decimal(console.consoleIOResult ?? 0))
    _ = store?.write(bytes("data/rig-boot-done"), decimal(options.lines))
    var channel: ChannelFrontend?
    if options.channel, var client = store {
        channel = ChannelFrontend.connect(devid: 1, store: &client, console: &console)
        store = client
    }

    // Then a console: echo what is typed, flush the history once connected.
    let deadline = start &+ options.timeoutSeconds &* 1_000_000_000
    var line: [UInt8] = []
    while Xen.now() < deadline || !timed {
        console.flushIfConnected()
        Xen.clearPending(consolePort)
        if let port = channel?.port { Xen.clearPending(port) }
        channel?.serve()
        let input = console.readInput()
        if input.isEmpty {
            Xen.wait(ports: [consolePort] + (channel.map { [$0.port] } ?? []), nanoseconds: 100_000_000)
            continue
        }
        var echo: [UInt8] = []
        for byte in input {
            if byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n") {
                echo += bytes("\r\n")
                if line == bytes("poweroff") {
                    console.write(echo + bytes("conch-pv-guest: powering off\n"))
                    Xen.powerOff()
                }
                if !line.isEmpty { echo += bytes("echo:") + line + bytes("\r\n") }
                line = []
            } else {
                echo.append(byte)
                if line.count < 256 { line.append(byte) }
            }
        }
        console.write(echo)
    }
    console.write(bytes("conch-pv-guest: timed out, powering off\n"))
    Xen.powerOff()
}
