//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CConchShims
import ConsoleCore
import Foundation
import Logging
import SystemExtras
import SystemPackage
import XenABI
import XenHypervisor

#if canImport(Glibc)
import Glibc
#endif

/// `conch hypervisor`: owns every simulated domain, page, grant and event channel,
/// and the guest processes. A single-threaded poll loop; control operations only
/// (data and notifications go directly between processes).
public final class SimHypervisorDaemon {
    public struct Configuration: Sendable {
        public var runDirectory: RunDirectory
        /// Bytes the hypervisor console ring keeps (`conch dmesg`).
        public var consoleCapacity: Int
        /// Bytes of that ring one domain's lines may fill (default: a quarter).
        public var consoleShare: Int?
        /// A domain's `console_io` rate and burst, bytes.
        public var consoleRate: TokenBucket.Configuration
        /// The wall around guest processes; nil runs them as ordinary processes of
        /// the host user (only for machines without user namespaces, and insecure).
        public var sandbox: GuestSandbox?

        public init(
            runDirectory: RunDirectory,
            consoleCapacity: Int = 1 << 20,
            consoleShare: Int? = nil,
            consoleRate: TokenBucket.Configuration = .init(rate: 16 << 10, burst: 64 << 10),
            sandbox: GuestSandbox?
        ) {
            self.runDirectory = runDirectory
            self.consoleCapacity = consoleCapacity
            self.consoleShare = consoleShare
            self.consoleRate = consoleRate
            self.sandbox = sandbox
        }
    }

    /// One connection: a dom0 tool on `hypervisor.sock`, or a guest's own.
    private final class Client {
        let fd: Int32
        let domid: DomID
        let privileged: Bool
        /// The request being reassembled from its packets.
        var assembler: SimWire.Assembler
        /// The answer still to send (a request is read only once the last answer is out,
        /// so a peer that does not read cannot make the hypervisor queue without bound
        /// or block).
        var outbound: [SimWire.Packet] = []
        /// Descriptors to close once `outbound` is sent (read-only page reopenings).
        var closeAfterSend: [FileDescriptor] = []

        init(fd: Int32, domid: DomID, privileged: Bool) {
            self.fd = fd
            self.domid = domid
            self.privileged = privileged
            assembler = SimWire.Assembler(limit: privileged ? SimWire.privilegedLimit : SimWire.guestLimit)
        }
    }

    private let configuration: Configuration
    private let logger: Logger
    private var listener: Int32 = -1
    private var acceptor = Acceptor(listener: -1)
    private var signals: Int32 = -1
    private var clients: [Int: Client] = [:]
    private var nextClientID = 1
    private var domains: [DomID: SimDomain] = [:]
    private var nextDomid: UInt16 = 1
    private var ports = SimPorts()
    private var dmesg: HypervisorDmesg
    private var running = true
    private let started = ContinuousClock.now

    /// Monotonic nanoseconds since start (the console rate limit's clock).
    private var now: UInt64 {
        let elapsed = started.duration(to: .now)
        return UInt64(elapsed.components.seconds) &* 1_000_000_000
            &+ UInt64(elapsed.components.attoseconds / 1_000_000_000)
    }

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.dmesg = HypervisorDmesg(
            limits: .init(
                capacity: configuration.consoleCapacity,
                share: configuration.consoleShare,
                rate: configuration.consoleRate
            )
        )
    }

    // MARK: - Lifecycle

    /// Binds `hypervisor.sock` (0600) and runs until SIGTERM/SIGINT; then destroys
    /// every domain and removes the socket.
    public func run() throws {
        signals = cconch_termination_signalfd()
        guard signals >= 0 else { throw Errno(rawValue: errno) }
        signal(SIGPIPE, SIG_IGN)
        try configuration.runDirectory.create()
        mkdir(configuration.runDirectory.logDirectory, 0o755)
        listener = try bindListener(configuration.runDirectory.hypervisorSocket)
        acceptor = Acceptor(listener: listener)
        logger.info("hypervisor listening", metadata: ["socket": "\(configuration.runDirectory.hypervisorSocket)"])
        while running { try pollOnce() }
        for domid in domains.keys.sorted() { destroyDomain(domid) }
        close(listener)
        unlink(configuration.runDirectory.hypervisorSocket)
        logger.info("hypervisor stopped")
    }

    private func bindListener(_ path: String) throws -> Int32 {
        // Bind and listen under a temporary name, then rename: the socket appears
        // at `path` only once it accepts connections.
        let temporary = path + ".new"
        unlink(temporary)
        // 0600 from the first moment: this socket is the privileged interface.
        let previous = umask(0o177)
        defer { umask(previous) }
        let fd = try UnixSocketPath.listen(at: temporary, type: Int32(SOCK_SEQPACKET.rawValue), backlog: 128)
        guard rename(temporary, path) == 0 else {
            let error = Errno(rawValue: errno)
            close(fd)
            throw error
        }
        return fd
    }

    // MARK: - Poll loop

    private enum Source {
        case listener
        case signals
        case client(Int)
        case guestExit(DomID)
    }

    private func pollOnce() throws {
        var sources: [Source] = [.signals]
        var fds = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
        if acceptor.isAccepting() {
            sources.append(.listener)
            fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0))
        }
        for (id, client) in clients {
            sources.append(.client(id))
            let events = client.outbound.isEmpty ? POLLIN : POLLOUT
            fds.append(pollfd(fd: client.fd, events: Int16(events), revents: 0))
        }
        for (domid, domain) in domains where domain.pidfd >= 0 {
            sources.append(.guestExit(domid))
            fds.append(pollfd(fd: domain.pidfd, events: Int16(POLLIN), revents: 0))
        }
        let ready = poll(&fds, nfds_t(fds.count), acceptor.pollTimeout(otherwise: -1))
        if ready < 0 {
            if errno == EINTR { return }
            throw Errno(rawValue: errno)
        }
        for (index, entry) in fds.enumerated() where entry.revents != 0 {
            switch sources[index] {
            case .listener: acceptClient()
            case .signals:
                let signal = cconch_read_signal(signals)
                if signal == SIGTERM || signal == SIGINT {
                    logger.info("stopping on signal \(signal)")
                    running = false
                }
            case .client(let id):
                if clients[id]?.outbound.isEmpty == false { flush(id) } else { serve(id) }
            case .guestExit(let domid): reapGuest(domid)
            }
        }
    }

    /// A new connection on `hypervisor.sock`: privileged dom0, if it is the host's
    /// toolstack (the socket is 0600 in a 0700 directory, and guests cannot see it;
    /// this is the second wall).
    private func acceptClient() {
        guard let fd = acceptor.accept() else { return }
        if let refusal = PeerPolicy.checkHostToolstack(fd) {
            logger.warning("refused a connection to the hypervisor socket: \(refusal)")
            close(fd)
            return
        }
        addClient(fd: fd, domid: .dom0, privileged: true)
    }

    @discardableResult
    private func addClient(fd: Int32, domid: DomID, privileged: Bool) -> Int {
        let id = nextClientID
        nextClientID += 1
        clients[id] = Client(fd: fd, domid: domid, privileged: privileged)
        return id
    }

    private func dropClient(_ id: Int) {
        guard let client = clients.removeValue(forKey: id) else { return }
        if client.privileged { ports.closeAll(ofConnection: id) }
        client.assembler.discard()
        for descriptor in client.closeAfterSend { try? descriptor.close() }
        close(client.fd)
    }

    /// Reads one packet; once a request is whole, answers it.
    private func serve(_ id: Int) {
        guard let client = clients[id] else { return }
        let message: ([UInt8], [FileDescriptor])?
        do {
            guard let packet = try SimWire.receivePacket(on: client.fd) else {
                dropClient(id)
                return
            }
            message = try client.assembler.add(packet)
        } catch {
            // Garbage from a guest ends that guest's control connection only.
            logger.notice("dropping hypervisor client: \(error)", metadata: ["domid": "\(client.domid)"])
            dropClient(id)
            return
        }
        guard let message else { return }  // more packets to come
        let request: SimRequest
        do {
            let (decoded, strayDescriptors) = try SimWire.decode(SimRequest.self, message)
            for descriptor in strayDescriptors { try? descriptor.close() }
            request = decoded
        } catch {
            logger.notice("dropping hypervisor client: \(error)", metadata: ["domid": "\(client.domid)"])
            dropClient(id)
            return
        }
        var descriptors: [FileDescriptor] = []
        var closeAfterSend: [FileDescriptor] = []
        let response: SimResponse
        do {
            response = try handle(
                request,
                from: client,
                connection: id,
                descriptors: &descriptors,
                temporary: &closeAfterSend
            )
        } catch let error as HypervisorError {
            response = .error(error)
        } catch {
            response = .error(.invalidArgument("\(error)"))
        }
        do {
            client.outbound = try SimWire.packets(response, descriptors: descriptors)
            client.closeAfterSend = closeAfterSend
        } catch {
            for descriptor in closeAfterSend { try? descriptor.close() }
            dropClient(id)
            return
        }
        flush(id)
    }

    /// Sends what the socket takes now; the rest waits for POLLOUT.
    private func flush(_ id: Int) {
        guard let client = clients[id] else { return }
        do {
            while let packet = client.outbound.first {
                guard try SimWire.send(packet, on: client.fd, blocking: false) else { return }
                client.outbound.removeFirst()
                for descriptor in client.closeAfterSend { try? descriptor.close() }
                client.closeAfterSend = []
            }
        } catch {
            dropClient(id)
        }
    }

    // MARK: - Requests

    private func requirePrivilege(_ client: Client, _ what: String) throws(HypervisorError) {
        guard client.privileged else { throw .permissionDenied("\(what) needs the privileged interface (dom0)") }
    }

    private func domain(_ domid: DomID) throws(HypervisorError) -> SimDomain {
        guard let domain = domains[domid], domain.state != .dying else { throw .noSuchDomain(domid) }
        return domain
    }

    private func handle(
        _ request: SimRequest,
        from client: Client,
        connection: Int,
        descriptors: inout [FileDescriptor],
        temporary: inout [FileDescriptor]
    ) throws -> SimResponse {
        switch request {
        case .identify:
            return .identity(domid: client.domid, privileged: client.privileged)

        case .startInfo:
            return .startInfo(try domain(client.domid).startInfo)

        case .createDomain(let spec):
            try requirePrivilege(client, "creating a domain")
            return .domain(try createDomain(spec))

        case .unpause(let domid):
            try requirePrivilege(client, "unpausing a domain")
            try unpause(try domain(domid))
            return .ok

        case .pause(let domid):
            try requirePrivilege(client, "pausing a domain")
            let target = try domain(domid)
            if let process = target.process, target.state == .running {
                process.kill(SIGSTOP)
                target.state = .paused
            }
            return .ok

        case .shutdownDomain(let domid, let reason):
            try requirePrivilege(client, "shutting a domain down")
            let target = try domain(domid)
            target.requestedShutdown = reason
            if let process = target.process {
                process.kill(SIGCONT)
                process.kill(SIGTERM)
            } else {
                markShutdown(target, reason)
            }
            return .ok

        case .destroy(let domid):
            try requirePrivilege(client, "destroying a domain")
            _ = try domain(domid)
            destroyDomain(domid)
            return .ok

        case .listDomains:
            try requirePrivilege(client, "listing domains")
            return .domains(domains.keys.sorted().compactMap { domains[$0]?.info })

        case .allocateUnboundPort(let domid, let remote):
            try requirePrivilege(client, "allocating a port for another domain")
            let port = try ports.allocateUnbound(in: try domain(domid).domid, remote: remote)
            return .port(port.number)

        case .mapForeign(let domid, let frame, let readOnly):
            try requirePrivilege(client, "mapping another domain's frame")
            let descriptor = try domain(domid).descriptor(for: frame, readOnly: readOnly)
            descriptors = [descriptor]
            if readOnly { temporary = [descriptor] }
            return .page(readOnly: readOnly)

        case .readConsole(let from, let clear):
            try requirePrivilege(client, "reading the hypervisor console")
            let start = min(max(from, 0), dmesg.bytes.count)
            let end = min(start + SimWire.consoleChunk, dmesg.bytes.count)
            let chunk = Data(dmesg.bytes[start..<end])
            let remaining = dmesg.bytes.count - end
            if clear && remaining == 0 { dmesg.clear() }
            return .console(chunk, remaining: remaining)

        case .mapGrant(let domid, let ref, let readOnly):
            let granter = try domain(domid)
            let frame = try granter.checkGrant(ref, for: client.domid, readOnly: readOnly)
            var mapper: SimDomain?
            if !client.privileged {
                let own = try domain(client.domid)
                guard own.grantMappings < own.spec.maxGrantMappings else {
                    throw HypervisorError.permissionDenied(
                        "d\(client.domid.rawValue) already holds \(own.grantMappings) grant mappings "
                            + "(max_maptrack_frames)"
                    )
                }
                mapper = own
            }
            let descriptor = try granter.descriptor(for: frame, readOnly: readOnly)
            descriptors = [descriptor]
            if readOnly { temporary = [descriptor] }
            mapper?.grantMappings += 1
            return .page(readOnly: readOnly)

        case .unmapGrant:
            if !client.privileged, let own = domains[client.domid], own.grantMappings > 0 { own.grantMappings -= 1 }
            return .ok

        case .mapOwnFrame(let frame):
            guard !client.privileged else { throw HypervisorError.invalidArgument("dom0 has no simulated frames") }
            descriptors = [try domain(client.domid).descriptor(for: frame, readOnly: false)]
            return .page(readOnly: false)

        case .allocateUnbound(let remote):
            let port = try ports.allocateUnbound(in: client.domid, remote: remote)
            if client.privileged { port.connection = connection }
            descriptors = [port.toRemote.fileDescriptor, port.fromRemote.fileDescriptor]
            return .port(port.number)

        case .bindInterdomain(let remote, let remotePort):
            _ = try domainOrDom0(remote)
            let port = try ports.bindInterdomain(in: client.domid, remote: remote, remotePort: remotePort)
            if client.privileged { port.connection = connection }
            descriptors = [port.toRemote.fileDescriptor, port.fromRemote.fileDescriptor]
            return .port(port.number)

        case .bindVirq(let virq):
            try requirePrivilege(client, "binding a VIRQ")
            let port = try ports.bindVirq(in: client.domid, virq)
            port.connection = connection
            descriptors = [port.toRemote.fileDescriptor, port.fromRemote.fileDescriptor]
            return .port(port.number)

        case .attachPort(let number):
            guard let port = ports[client.domid, number] else {
                throw HypervisorError.permissionDenied("d\(client.domid.rawValue) owns no port \(number.rawValue)")
            }
            descriptors = [port.toRemote.fileDescriptor, port.fromRemote.fileDescriptor]
            return .port(port.number)

        case .closePort(let number):
            guard ports.close(client.domid, number) != nil else {
                throw HypervisorError.permissionDenied("d\(client.domid.rawValue) owns no port \(number.rawValue)")
            }
            return .ok

        case .portStatus(let number):
            return .portStatus(ports.status(client.domid, number))

        case .consoleWrite(let data):
            if !client.privileged {
                guard try domain(client.domid).spec.hypervisorConsole else {
                    throw HypervisorError.permissionDenied(
                        "console_io is not permitted for d\(client.domid.rawValue) (Xen's default policy allows it "
                            + "only to the console domain; conch_console_io = 1 in the domain's configuration allows it)"
                    )
                }
            }
            dmesg.write(Array(data), from: client.domid, now: now)
            ports.raise(.consoleRing)
            return .ok

        case .requestShutdown(let reason):
            try domain(client.domid).requestedShutdown = reason
            return .ok
        }
    }

    private func domainOrDom0(_ domid: DomID) throws(HypervisorError) -> DomID {
        if domid == .dom0 { return domid }
        return try domain(domid).domid
    }

    // MARK: - Domains

    private func createDomain(_ spec: DomainSpec) throws -> DomainInfo {
        if let problem = NameRules.problem(with: spec.name, what: "domain name") {
            throw HypervisorError.invalidArgument(problem)
        }
        guard !domains.values.contains(where: { $0.spec.name == spec.name }) else {
            throw HypervisorError.invalidArgument("a domain named '\(spec.name)' already exists")
        }
        guard (2...131_072).contains(spec.maxEventChannels), spec.maxGrantMappings >= 0 else {
            throw HypervisorError.invalidArgument(
                "maxEventChannels must be between 2 and 131072, maxGrantMappings at least 0"
            )
        }
        guard let domid = allocateDomid() else { throw HypervisorError.invalidArgument("no free domain ids") }
        let domain = try SimDomain(domid: domid, spec: spec)
        ports.setLimit(spec.maxEventChannels, for: domid)
        // The builder's event channels: console and xenstore, unbound in the guest
        // towards their backends.
        domain.consolePort = try ports.allocateUnbound(in: domid, remote: spec.consoleBackend).number
        domain.xenstorePort = try ports.allocateUnbound(in: domid, remote: spec.xenstoreDomain).number
        domains[domid] = domain
        logger.info("domain created", metadata: ["domid": "\(domid)", "name": "\(spec.name)"])
        return domain.info
    }

    private func allocateDomid() -> DomID? {
        for _ in 0..<Int(DomID.firstReserved.rawValue) {
            let candidate = DomID(nextDomid)
            nextDomid = nextDomid + 1 >= DomID.firstReserved.rawValue ? 1 : nextDomid + 1
            if domains[candidate] == nil { return candidate }
        }
        return nil
    }

    private func unpause(_ domain: SimDomain) throws {
        switch domain.state {
        case .running: return
        case .shutdown, .dying: throw HypervisorError.invalidArgument("d\(domain.domid.rawValue) has shut down")
        case .paused:
            if let process = domain.process {
                process.kill(SIGCONT)
            } else {
                try spawnGuest(domain)
            }
            domain.state = .running
        }
    }

    /// The environment a guest starts with: nothing of the host's but a neutral
    /// PATH, plus what the toolstack asked for and what the guest kernel needs.
    static func guestEnvironment(_ domain: SimDomain, deviceDirectory: String) -> [String: String] {
        var environment = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/",
            "LANG": "C.UTF-8",
        ]
        for (key, value) in domain.spec.environment { environment[key] = value }
        environment["CONCH_DOMID"] = String(domain.domid.rawValue)
        environment["CONCH_HYPERVISOR_FD"] = "3"
        environment["CONCH_GUEST_DEV"] = deviceDirectory
        if domain.spec.payload != nil { environment["CONCH_KERNEL_FD"] = "4" }
        return environment
    }

    /// Starts the guest program behind the sandbox, with its control connection —
    /// already bound to its domid — at fd 3, the payload (if any) at fd 4, and its
    /// stdio in `logs/guest-<name>.stdio.log`. Nothing else of the host crosses over.
    private func spawnGuest(_ domain: SimDomain) throws {
        let (mine, theirs) = try SimWire.socketPair()
        defer { close(theirs) }
        var opened: [Int32] = []
        defer { for fd in opened { close(fd) } }
        func openOrThrow(_ path: String, _ flags: Int32, what: String) throws -> FileDescriptor {
            let fd = path.withCString { open($0, flags | O_CLOEXEC, 0o600) }
            guard fd >= 0 else {
                let code = Errno(rawValue: errno)
                close(mine)
                throw HypervisorError.invalidArgument(
                    "cannot open \(what) \(path) for d\(domain.domid.rawValue): \(code)"
                )
            }
            opened.append(fd)
            return FileDescriptor(rawValue: fd)
        }
        let logPath = "\(configuration.runDirectory.logDirectory)/guest-\(domain.spec.name).stdio.log"
        let log = try openOrThrow(logPath, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, what: "the stdio log")
        let null = try openOrThrow("/dev/null", O_RDONLY, what: "")
        var placement: [Int32: FileDescriptor] = [0: null, 1: log, 2: log, 3: FileDescriptor(rawValue: theirs)]
        if let payload = domain.spec.payload { placement[4] = try openOrThrow(payload, O_RDONLY, what: "the kernel") }
        let process: ChildProcess
        do {
            if let sandbox = configuration.sandbox {
                let executable = try openOrThrow(domain.spec.program, O_RDONLY, what: "the program")
                process = try ChildProcess.sandboxed(
                    sandbox,
                    guestIndex: UInt32(domain.domid.rawValue),
                    executable: executable,
                    arguments: [domain.spec.program] + domain.spec.arguments,
                    environment: Self.guestEnvironment(domain, deviceDirectory: GuestSandbox.guestDeviceDirectory),
                    descriptors: placement,
                    hostname: domain.spec.name
                )
            } else {
                let devices = "\(configuration.runDirectory.path)/guests/\(domain.spec.name)/dev"
                process = try ChildProcess(
                    executable: domain.spec.program,
                    arguments: domain.spec.arguments,
                    descriptors: placement,
                    environment: Self.guestEnvironment(domain, deviceDirectory: devices),
                    newProcessGroup: true
                )
            }
        } catch {
            close(mine)
            throw HypervisorError.invalidArgument(
                "cannot start '\(domain.spec.program)' for d\(domain.domid.rawValue): \(error)"
            )
        }
        domain.process = process
        domain.pidfd = cconch_pidfd_open(process.pid)
        domain.guestSocket = mine
        addClient(fd: mine, domid: domain.domid, privileged: false)
        logger.info("guest started", metadata: ["domid": "\(domain.domid)", "pid": "\(process.pid)"])
    }

    /// The guest process ended: the domain shuts down with a reason from how it
    /// ended (exit 0 → poweroff unless it announced another reason; anything else
    /// → crash), then the configured action runs.
    private func reapGuest(_ domid: DomID) {
        guard let domain = domains[domid], let process = domain.process else { return }
        guard let termination = try? process.poll() else { return }
        close(domain.pidfd)
        domain.pidfd = -1
        domain.process = nil
        let reason: ShutdownReason
        switch termination {
        case .exited(0): reason = domain.requestedShutdown ?? .poweroff
        case .exited: reason = domain.requestedShutdown == .reboot ? .reboot : .crash
        case .signalled(let signal): reason = signal == SIGTERM ? (domain.requestedShutdown ?? .poweroff) : .crash
        }
        logger.info("guest exited", metadata: ["domid": "\(domid)", "how": "\(termination)", "reason": "\(reason)"])
        markShutdown(domain, reason)
    }

    private func markShutdown(_ domain: SimDomain, _ reason: ShutdownReason) {
        dmesg.flush(domain.domid)
        domain.state = .shutdown
        domain.shutdownReason = reason
        ports.raise(.domainException)
        let action: ShutdownAction
        switch reason {
        case .poweroff, .suspend, .softReset: action = domain.spec.onPoweroff
        case .reboot: action = domain.spec.onReboot
        case .crash, .watchdog: action = domain.spec.onCrash
        }
        if action != .preserve { destroyDomain(domain.domid) }
    }

    /// Kills and reaps the guest process, closes its ports and frees its memory.
    private func destroyDomain(_ domid: DomID) {
        guard let domain = domains[domid] else { return }
        domain.state = .dying
        if let process = domain.process {
            process.kill(SIGKILL)
            _ = try? process.wait()
        }
        if domain.pidfd >= 0 { close(domain.pidfd) }
        for (id, client) in clients where client.domid == domid && !client.privileged { dropClient(id) }
        dmesg.forget(domid)
        ports.closeAll(of: domid)
        domains[domid] = nil
        ports.raise(.domainException)
        logger.info("domain destroyed", metadata: ["domid": "\(domid)"])
    }
}
