//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import Synchronization
import SystemExtras
import SystemPackage
import XenABI
import XenHypervisor
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// Why the guest kernel cannot start.
public struct GuestKernelError: Error, CustomStringConvertible {
    public let description: String
}

/// The Conch guest kernel: the program the hypervisor runs for a domain. It brings
/// up the console 0 frontend and xenbus, prints a short boot log, connects every
/// secondary console and channel (and follows hotplug), exposes them under
/// `$CONCH_GUEST_DEV`, and runs the configured program with console 0 as its
/// stdio. Its exit status is the program's, which the hypervisor turns into the
/// shutdown reason.
public final class GuestKernel: @unchecked Sendable {
    public struct Options: Sendable {
        public var program: String
        public var arguments: [String]
        public var mode: FrontendMode
        public init(program: String, arguments: [String], mode: FrontendMode) {
            self.program = program
            self.arguments = arguments
            self.mode = mode
        }
    }

    let options: Options
    let hypervisor: any GuestHypervisor
    let info: StartInfo
    let console: ConsoleZeroFrontend
    let devDirectory: String
    private var channels: [Int: ChannelFrontend] = [:]
    /// Devices being probed: scans run concurrently (device and backend-state
    /// watches), and only the first may set a device up.
    private var probing: Set<Int> = []
    private var nextFrame: UInt64
    private var nextGrant = GrantRef.firstUnreserved.rawValue
    private var grantTable: GuestPage?
    private let lock = NSLock()

    public init(options: Options, hypervisor: any GuestHypervisor) throws {
        self.options = options
        self.hypervisor = hypervisor
        info = hypervisor.startInfo
        nextFrame = info.firstFreeFrame.rawValue
        console = ConsoleZeroFrontend(
            page: try hypervisor.mapOwnFrame(info.consoleFrame),
            channel: try hypervisor.attach(info.consolePort),
            hypervisor: hypervisor,
            mode: options.mode
        )
        guard let devices = ProcessInfo.processInfo.environment["CONCH_GUEST_DEV"], devices.hasPrefix("/") else {
            throw GuestKernelError(description: "CONCH_GUEST_DEV is not set: the hypervisor starts the guest kernel")
        }
        devDirectory = devices
    }

    func log(_ line: String) {
        console.write(Array("[    conch] \(line)\r\n".utf8))
    }

    /// Boots, runs the program, returns its exit status.
    public func run() async throws -> Int32 {
        log("Conch guest kernel: domain \(info.domid.rawValue) (\(info.name)), \(info.pageCount) pages")
        log("console: frame \(info.consoleFrame.rawValue) port \(info.consolePort.rawValue), frontend \(options.mode)")
        try? FileManager.default.removeItem(atPath: devDirectory)
        try FileManager.default.createDirectory(
            atPath: devDirectory + "/xen-channel",
            withIntermediateDirectories: true
        )

        // Console 0 as the program's stdio, through a pty that behaves as Linux's
        // hvc0 does under a getty: echo, line editing, CR NL. A program that wants
        // raw bytes sets raw mode, as it would on a real console.
        let stdio = try PseudoTerminal(.terminal)
        try? FileManager.default.createSymbolicLink(
            atPath: devDirectory + "/hvc0",
            withDestinationPath: stdio.slavePath
        )
        let master = stdio.master.rawValue
        console.onInput = { bytes in
            _ = bytes.withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
        }

        let store = try await XenstoreClient.connectRing(hypervisor: hypervisor)
        let domainPath = try await store.getDomainPath(info.domid)
        log("xenbus: xenstore ring frame \(info.xenstoreFrame.rawValue) port \(info.xenstorePort.rawValue)")
        grantTable = try hypervisor.mapOwnFrame(info.grantTableFrame)
        let devices = try await store.watch("device/console", token: "consoles")
        await scanDevices(store: store, domainPath: domainPath)
        Task { [self] in
            for await _ in devices { await scanDevices(store: store, domainPath: domainPath) }
        }
        // Give the channels present at boot a moment to connect, so an agent finds
        // its device; a backend that is not running yet connects them later.
        for _ in 0..<100 where !allChannelsConnected { try? await Task.sleep(for: .milliseconds(20)) }

        log("starting \(options.program)")
        var environment = ProcessInfo.processInfo.environment
        environment["CONCH_GUEST_DEV"] = devDirectory
        environment["CONCH_DOMID"] = String(info.domid.rawValue)
        environment["TERM"] = environment["TERM"] ?? "vt100"
        environment.removeValue(forKey: "CONCH_HYPERVISOR_FD")
        environment.removeValue(forKey: "CONCH_KERNEL_FD")
        var descriptors: [Int32: FileDescriptor] = [0: stdio.slave, 1: stdio.slave, 2: stdio.slave]
        var executable = options.program
        // The hypervisor loaded our program at fd 4 (its path may be out of our reach).
        if let text = ProcessInfo.processInfo.environment["CONCH_KERNEL_FD"], let fd = Int32(text) {
            descriptors[fd] = FileDescriptor(rawValue: fd)
            executable = "/proc/self/fd/\(fd)"
        }
        let child = try ChildProcess(
            executable: executable,
            argument0: options.program,
            arguments: options.arguments,
            descriptors: descriptors,
            environment: environment
        )
        // xl shutdown / conch shutdown write control/shutdown; like Linux, answer by
        // clearing it and stopping the program, then shut down with that reason.
        let requested = Mutex<ShutdownReason?>(nil)
        let control = try? await store.watch("control/shutdown", token: "shutdown")
        let shutdownWatcher = Task { [self] in
            guard let control else { return }
            for await _ in control {
                guard let text = try? await store.readString(domainPath + "/control/shutdown"), !text.isEmpty else {
                    continue
                }
                let reason: ShutdownReason = text == "reboot" ? .reboot : .poweroff
                requested.withLock { $0 = reason }
                try? await store.write(domainPath + "/control/shutdown", "")
                log("shutdown requested (\(text)): stopping \(options.program)")
                child.kill(SIGTERM)
                return
            }
        }
        // The relay: program output → console 0; console input → program.
        let relay = Thread { [console] in Self.relay(master: master, console: console) }
        relay.start()
        let termination = await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: (try? child.wait()) ?? .exited(1)) }.start()
        }
        shutdownWatcher.cancel()
        Self.drain(master: master, console: console)
        if let reason = requested.withLock({ $0 }) {
            log("\(options.program) stopped; \(reason.rawValue)")
            try? hypervisor.requestShutdown(reason)
            return 0
        }
        let status: Int32
        switch termination {
        case .exited(let code): status = code
        case .signalled(let signal): status = 128 + signal
        }
        log("\(options.program) exited with status \(status)")
        if status != 0 { try? hypervisor.requestShutdown(.crash) }
        return status
    }

    /// Reads the program's output and writes it to console 0; wakes every 100 ms
    /// (or on a notification) to take input and let a boot-history replay run.
    static func relay(master: Int32, console: ConsoleZeroFrontend) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var fds = [
                pollfd(fd: master, events: Int16(POLLIN), revents: 0),
                pollfd(fd: console.channel.waitDescriptor, events: Int16(POLLIN), revents: 0),
            ]
            guard poll(&fds, 2, 100) >= 0 else { continue }
            if fds[1].revents != 0 { _ = try? console.channel.consumePending() }
            if fds[0].revents & Int16(POLLIN) != 0 {
                let got = read(master, &buffer, buffer.count)
                if got > 0 { console.write(Array(buffer.prefix(got))) }
            }
            console.poll()
        }
    }

    /// After the program exits: whatever it wrote last still goes out.
    static func drain(master: Int32, console: ConsoleZeroFrontend) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var entry = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 50) > 0 else { return }
            let got = read(master, &buffer, buffer.count)
            guard got > 0 else { return }
            console.write(Array(buffer.prefix(got)))
        }
    }

    // MARK: Secondary consoles and channels

    private var allChannelsConnected: Bool { lock.withLock { channels.values.allSatisfy(\.isRunning) } }

    private func scanDevices(store: XenstoreClient, domainPath: String) async {
        let base = domainPath + "/device/console"
        let devids = Set(((try? await store.directory(base)) ?? []).compactMap { Int($0) }.filter { $0 > 0 })
        for devid in devids.sorted() {
            let backend = (try? await store.readString("\(base)/\(devid)/backend")) ?? ""
            let backendState = (try? await store.readString(backend + "/state")).flatMap { XenbusState(nodeValue: $0) }
            let frontendState = (try? await store.readString("\(base)/\(devid)/state")).flatMap {
                XenbusState(nodeValue: $0)
            }
            let existing = lock.withLock { channels[devid] }
            let progress: ConsoleFrontendHandshake.Progress =
                switch existing {
                case nil: .absent
                case let channel?: channel.isRunning ? .connected : .ringOffered
                }
            let step = ConsoleFrontendHandshake.step(frontend: frontendState, backend: backendState, progress: progress)
            switch step {
            case .wait:
                continue
            case .offerRing:
                // ChannelFrontend writes Initialised itself, inside its handshake.
                guard lock.withLock({ probing.insert(devid).inserted }) else { continue }
                await probe(devid, store: store, domainPath: domainPath)
                _ = lock.withLock { probing.remove(devid) }
                continue
            case .connect:
                guard let channel = existing, channel.start() else { continue }  // another scan got here first
                expose(channel)
                log("hvc\(devid): connected\(channel.name.map { " (\($0))" } ?? "")")
            case .close:
                remove(devid)
            }
            if let next = ConsoleFrontendHandshake.frontendState(after: step) {
                try? await store.write("\(base)/\(devid)/state", "\(next.rawValue)")
            }
        }
        for devid in lock.withLock({ Array(channels.keys) }) where !devids.contains(devid) { remove(devid) }
    }

    private func probe(_ devid: Int, store: XenstoreClient, domainPath: String) async {
        guard let grantTable else { return }
        let (frame, grant): (UInt64, UInt32) = lock.withLock {
            defer {
                nextFrame += 1
                nextGrant += 1
            }
            return (nextFrame, nextGrant)
        }
        guard frame < UInt64(info.pageCount) else {
            log("hvc\(devid): no free page for its ring")
            return
        }
        do {
            let channel = try await ChannelFrontend(
                devid: devid,
                domainPath: domainPath,
                hypervisor: hypervisor,
                store: store,
                frame: PageFrame(frame),
                grant: GrantRef(grant),
                grantTable: grantTable,
                dropsWhileDisconnected: options.mode == .dropWhileDisconnected
            )
            lock.withLock { channels[devid] = channel }
            // Follow the other end's state, as xenbus's otherend watch does.
            let backend = try await store.readString("\(domainPath)/device/console/\(devid)/backend")
            let events = try await store.watch(backend + "/state", token: "backend-\(devid)")
            Task { [self] in
                for await _ in events { await scanDevices(store: store, domainPath: domainPath) }
            }
        } catch {
            log("hvc\(devid): cannot set up: \(error)")
        }
    }

    /// `hvc<N>` → the pty slave, and `xen-channel/<name>` → `../hvc<N>`, as the
    /// udev rule of xen-pv-channel(7) does.
    private func expose(_ channel: ChannelFrontend) {
        let device = "\(devDirectory)/hvc\(channel.devid)"
        try? FileManager.default.removeItem(atPath: device)
        try? FileManager.default.createSymbolicLink(atPath: device, withDestinationPath: channel.devicePath)
        if let name = channel.name, !name.isEmpty, !name.contains("/") {
            let link = "\(devDirectory)/xen-channel/\(name)"
            try? FileManager.default.removeItem(atPath: link)
            try? FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "../hvc\(channel.devid)")
        }
    }

    private func remove(_ devid: Int) {
        guard let channel = lock.withLock({ channels.removeValue(forKey: devid) }) else { return }
        channel.stop()
        try? FileManager.default.removeItem(atPath: "\(devDirectory)/hvc\(devid)")
        if let name = channel.name {
            try? FileManager.default.removeItem(atPath: "\(devDirectory)/xen-channel/\(name)")
        }
        try? hypervisor.close(channel.channel.port)
        log("hvc\(devid): removed")
    }
}
