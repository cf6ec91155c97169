//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import DequeModule
import Foundation
import Logging
import SystemExtras
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The keeper of socket channels' sinks: a small process that outlives consoled.
///
/// It owns each socket channel's listening socket and its client, and relays
/// bytes between the client and consoled over a stream socket pair per channel.
/// When consoled is killed (SIGKILL, a crash), the client stays connected and
/// the bytes already handed over stay here. The restarted consoled attaches
/// again and the two reconcile on the ring's own free-running indices, which
/// survive in guest memory:
///
/// - output (guest → client): the keeper counts bytes received from consoled
///   since the channel's first attach, so `base + received` is the `out_cons`
///   value consoled would have written had it lived; consoled consumes the
///   difference and sends nothing twice.
/// - input (client → guest): only consoled advances `in_prod`, with bytes taken
///   in order from the keeper's stream, so `base + sent − in_prod` bytes were
///   sent but never reached the ring; the keeper resends them from its history.
///
/// Nothing is lost and nothing is duplicated. Control requests are JSON over a
/// SOCK_SEQPACKET socket; the data socket travels with the `attach` reply.
public final class SinkKeeper {
    /// Bytes held for a client before the keeper stops reading from consoled.
    static let outputLimit = 256 * 1024
    /// Input bytes remembered after sending them to consoled (for a resend).
    static let inputHistoryLimit = 1 << 20
    /// Client input held before the keeper stops reading the client.
    static let inputLimit = 64 * 1024

    public struct Request: Codable, Sendable {
        public enum Operation: String, Codable, Sendable {
            case open, attach, close, quit
            /// Which channels have a client connected now (for stats and metrics).
            case clients
        }
        public var op: Operation
        public var key: String?
        public var path: String?
        public var name: String?
        public var outCons: UInt32?
        public var inProd: UInt32?

        public init(
            op: Operation,
            key: String? = nil,
            path: String? = nil,
            name: String? = nil,
            outCons: UInt32? = nil,
            inProd: UInt32? = nil
        ) {
            self.op = op
            self.key = key
            self.path = path
            self.name = name
            self.outCons = outCons
            self.inProd = inProd
        }
    }

    public struct Reply: Codable, Sendable {
        public var error: String?
        /// `attach`: the `out_cons` consoled should advance its ring to.
        public var outCons: UInt32?
        /// `clients`: the keys of the channels whose socket has a client connected.
        public var clients: [String]?
    }

    final class Entry {
        let key: String
        let path: String
        let name: String
        var listener: Int32
        var acceptor: Acceptor
        var client: Int32?
        var data: Int32?
        var toClient = Deque<UInt8>()
        var toConsoled = Deque<UInt8>()
        var inputHistory = Deque<UInt8>()
        var counts = KeeperLedger()

        init(key: String, path: String, name: String, listener: Int32) {
            self.key = key
            self.path = path
            self.name = name
            self.listener = listener
            acceptor = Acceptor(listener: listener)
        }
    }

    let socketPath: String
    let logger: Logger
    /// The sockets this keeper (or an earlier keeper of this run directory) created:
    /// the only files it ever unlinks.
    private var ledger: SocketLedger
    /// One read buffer for every descriptor (the keeper is single-threaded).
    private var buffer = [UInt8](repeating: 0, count: 65536)
    private var entries: [String: Entry] = [:]
    private var controlListener: Int32 = -1
    private var controlAcceptor = Acceptor(listener: -1)
    private var control: UnixSocket?
    private var lastControl = ContinuousClock.now
    /// When the control socket's path was last checked (a path lookup per wake-up
    /// would cost every relayed byte a filesystem walk).
    private var lastSocketCheck = ContinuousClock.now
    private var running = true
    /// With no consoled attached for this long, the keeper closes everything and exits.
    let orphanTimeout: Duration

    /// - Parameter ledgerPath: where the keeper records the sockets it creates
    ///   (in the run directory, so that a restarted keeper knows them too).
    public init(socketPath: String, ledgerPath: String, orphanTimeout: Duration = .seconds(60), logger: Logger) {
        self.socketPath = socketPath
        self.orphanTimeout = orphanTimeout
        self.logger = logger
        ledger = SocketLedger(path: ledgerPath)
    }

    /// Serves until `quit`, or until orphaned.
    public func run() throws {
        unlink(socketPath)
        controlListener = try UnixSocketPath.listen(
            at: socketPath,
            type: Int32(SOCK_SEQPACKET.rawValue),
            backlog: 4
        )
        controlAcceptor = Acceptor(listener: controlListener)
        defer {
            for key in entries.keys.sorted() { close(key) }
            Glibc.close(controlListener)
            unlink(socketPath)
        }
        logger.info("keeper running", metadata: ["socket": "\(socketPath)"])
        while running {
            var fds: [pollfd] = []
            var owners: [(Entry?, Role)] = []
            var timeout: Int32 = 1000
            if controlAcceptor.isAccepting() {
                fds.append(pollfd(fd: controlListener, events: Int16(POLLIN), revents: 0))
                owners.append((nil, .controlListener))
            }
            timeout = controlAcceptor.pollTimeout(otherwise: timeout)
            if let control {
                fds.append(pollfd(fd: control.fileDescriptor.rawValue, events: Int16(POLLIN), revents: 0))
                owners.append((nil, .control))
            }
            for entry in entries.values {
                if entry.acceptor.isAccepting() {
                    fds.append(pollfd(fd: entry.listener, events: Int16(POLLIN), revents: 0))
                    owners.append((entry, .listener))
                }
                timeout = entry.acceptor.pollTimeout(otherwise: timeout)
                if let client = entry.client {
                    var events: Int32 = 0
                    if entry.toConsoled.count < Self.inputLimit { events |= Int32(POLLIN) }
                    if !entry.toClient.isEmpty { events |= Int32(POLLOUT) }
                    fds.append(pollfd(fd: client, events: Int16(events), revents: 0))
                    owners.append((entry, .client))
                }
                if let data = entry.data {
                    var events: Int32 = 0
                    if entry.toClient.count < Self.outputLimit { events |= Int32(POLLIN) }
                    if !entry.toConsoled.isEmpty { events |= Int32(POLLOUT) }
                    fds.append(pollfd(fd: data, events: Int16(events), revents: 0))
                    owners.append((entry, .data))
                }
            }
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 && errno != EINTR { throw Errno(rawValue: errno) }
            if control == nil, lastControl.duration(to: .now) > orphanTimeout {
                logger.warning("no consoled for \(orphanTimeout): closing every channel and exiting")
                return
            }
            if lastSocketCheck.duration(to: .now) >= .seconds(1) {
                lastSocketCheck = .now
                if access(socketPath, F_OK) != 0 {
                    logger.warning("\(socketPath) was removed: exiting")
                    return
                }
            }
            guard ready > 0 else { continue }
            for (index, entry) in fds.enumerated() where entry.revents != 0 {
                let (owner, role) = owners[index]
                // An earlier event in this pass may have closed it.
                if let owner, entries[owner.key] !== owner { continue }
                handle(role, owner, revents: entry.revents)
            }
        }
    }

    enum Role {
        case controlListener, control, listener, client, data
    }

    private func handle(_ role: Role, _ entry: Entry?, revents: Int16) {
        switch role {
        case .controlListener:
            guard let fd = controlAcceptor.accept() else { return }
            if let refusal = PeerPolicy.checkHostToolstack(fd) {
                logger.warning("refused a connection to the keeper's control socket: \(refusal)")
                Glibc.close(fd)
                return
            }
            // A new consoled: the old one is gone (or about to be).
            control = UnixSocket(adopting: FileDescriptor(rawValue: fd))
            lastControl = .now
        case .control:
            serveControl()
        case .listener:
            guard let entry else { return }
            acceptClient(entry)
        case .client:
            guard let entry else { return }
            if revents & Int16(POLLOUT) != 0 { flush(&entry.toClient, to: entry.client, entry) }
            if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { readClient(entry) }
        case .data:
            guard let entry else { return }
            if revents & Int16(POLLOUT) != 0 { sendInput(entry) }
            if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { readData(entry, draining: false) }
        }
    }

    // MARK: Control

    private func serveControl() {
        guard let control else { return }
        let message: [UInt8]
        do {
            message = try control.receive(maxBytes: 65536, maxDescriptors: 0).bytes
        } catch {
            self.control = nil
            lastControl = .now
            return
        }
        guard !message.isEmpty else {
            self.control = nil  // consoled went away
            lastControl = .now
            return
        }
        var reply = Reply()
        var descriptors: [FileDescriptor] = []
        do {
            let request = try JSONDecoder().decode(Request.self, from: Data(message))
            switch request.op {
            case .open:
                try open(key: request.key ?? "", path: request.path ?? "", name: request.name ?? "")
            case .attach:
                let (descriptor, outCons) = try attach(
                    key: request.key ?? "",
                    outCons: request.outCons ?? 0,
                    inProd: request.inProd ?? 0
                )
                reply.outCons = outCons
                descriptors = [descriptor]
            case .close:
                close(request.key ?? "")
            case .quit:
                running = false
            case .clients:
                reply.clients = entries.values.filter { $0.client != nil }.map(\.key).sorted()
            }
        } catch {
            reply.error = "\(error)"
        }
        let bytes = (try? JSONEncoder().encode(reply)).map { Array($0) } ?? Array("{}".utf8)
        try? control.send(bytes, descriptors: descriptors)
        for descriptor in descriptors { try? descriptor.close() }
    }

    struct KeeperError: Error, CustomStringConvertible {
        let description: String
    }

    private func open(key: String, path: String, name: String) throws {
        if let existing = entries[key] {
            guard existing.path == path else { throw KeeperError(description: "\(key) is open at \(existing.path)") }
            return
        }
        guard !key.isEmpty, path.hasPrefix("/") else { throw KeeperError(description: "open needs a key and a path") }
        try ledger.removeStale(path)
        let listener: Int32
        do {
            // Created 0600 from the first moment (the keeper's umask is 077).
            listener = try UnixSocketPath.listen(at: path, backlog: 8, nonBlocking: true) { try ledger.record(path) }
        } catch {
            ledger.remove(path)
            throw error
        }
        entries[key] = Entry(key: key, path: path, name: name, listener: listener)
        logger.debug("channel socket open", metadata: ["key": "\(key)", "path": "\(path)"])
    }

    /// The channel's new data stream, and the `out_cons` the ring must be advanced
    /// to: everything an earlier consoled already handed over.
    private func attach(
        key: String,
        outCons: UInt32,
        inProd: UInt32
    ) throws -> (stream: FileDescriptor, outCons: UInt32) {
        guard let entry = entries[key] else { throw KeeperError(description: "\(key) is not open") }
        if entry.data != nil { readData(entry, draining: true) }  // everything the old consoled sent
        if let data = entry.data { Glibc.close(data) }
        entry.data = nil
        // Input the old consoled took but never wrote into the ring goes again.
        switch entry.counts.attach(outCons: outCons, inProd: inProd, history: entry.inputHistory.count) {
        case .nothing:
            break
        case .resend(let count):
            let again = entry.inputHistory.suffix(count)
            entry.inputHistory.removeLast(count)
            entry.toConsoled.insert(contentsOf: again, at: 0)
        case .impossible(let unconfirmed):
            logger.error(
                "input reconciliation impossible",
                metadata: ["key": "\(key)", "unconfirmed": "\(unconfirmed)"]
            )
        }
        let (mine, theirs) = try UnixSocket.pair()
        let data = dup(mine.fileDescriptor.rawValue)
        _ = fcntl(data, F_SETFD, FD_CLOEXEC)
        _ = fcntl(data, F_SETFL, fcntl(data, F_GETFL) | O_NONBLOCK)
        entry.data = data
        let handed = FileDescriptor(rawValue: dup(theirs.fileDescriptor.rawValue))
        return (handed, entry.counts.deliveredOutCons ?? outCons)
    }

    private func close(_ key: String) {
        guard let entry = entries.removeValue(forKey: key) else { return }
        Glibc.close(entry.listener)
        if let client = entry.client { Glibc.close(client) }
        if let data = entry.data { Glibc.close(data) }
        ledger.remove(entry.path)
    }

    // MARK: Bytes

    private func acceptClient(_ entry: Entry) {
        guard let fd = entry.acceptor.accept(nonBlocking: true) else { return }
        // The channel's other end is the host's agent; a guest must not pose as it.
        if let refusal = PeerPolicy.checkHostToolstack(fd) {
            logger.warning(
                "refused a client of channel '\(entry.name)': \(refusal)",
                metadata: ["path": "\(entry.path)"]
            )
            Glibc.close(fd)
            return
        }
        guard entry.client == nil else {
            let message = Array("conch: channel '\(entry.name)' is busy: another client is attached\r\n".utf8)
            _ = sendAvailable(fd, message)
            Glibc.close(fd)
            return
        }
        entry.client = fd
    }

    private func readClient(_ entry: Entry) {
        guard let client = entry.client else { return }
        switch readAvailable(client, into: &buffer) {
        case .moved(let got):
            entry.toConsoled.append(contentsOf: buffer[..<got])
            sendInput(entry)
        case .wouldBlock:
            break
        case .closed:
            Glibc.close(client)
            entry.client = nil
        }
    }

    /// Reads what consoled sent; `draining` reads until nothing is left (an
    /// attach: the old consoled is gone, its last bytes count). With nothing
    /// queued for the client, bytes go straight through; only what the client
    /// does not take at once is queued.
    private func readData(_ entry: Entry, draining: Bool) {
        guard let data = entry.data else { return }
        reading: repeat {
            switch readAvailable(data, into: &buffer) {
            case .moved(let got):
                entry.counts.received(got)
                var sent = 0
                if entry.toClient.isEmpty, let client = entry.client {
                    // A client that went away is noticed by the flush below.
                    sent = sendAvailable(client, buffer[..<got]).count
                }
                if sent < got { entry.toClient.append(contentsOf: buffer[sent..<got]) }
            case .wouldBlock:
                break reading
            case .closed:
                Glibc.close(data)
                entry.data = nil
                break reading
            }
        } while draining || entry.toClient.count < Self.outputLimit
        flush(&entry.toClient, to: entry.client, entry)
    }

    private func sendInput(_ entry: Entry) {
        guard let data = entry.data, !entry.toConsoled.isEmpty else { return }
        let chunk = Array(entry.toConsoled.prefix(65536))
        // consoled's end closing is noticed when its stream is read.
        let sent = sendAvailable(data, chunk).count
        guard sent > 0 else { return }
        entry.toConsoled.removeFirst(sent)
        entry.counts.sent(sent)
        entry.inputHistory.append(contentsOf: chunk.prefix(sent))
        if entry.inputHistory.count > Self.inputHistoryLimit {
            entry.inputHistory.removeFirst(entry.inputHistory.count - Self.inputHistoryLimit)
        }
    }

    private func flush(_ pending: inout Deque<UInt8>, to descriptor: Int32?, _ entry: Entry) {
        guard let descriptor, !pending.isEmpty else { return }
        while !pending.isEmpty {
            switch sendAvailable(descriptor, pending.prefix(65536)) {
            case .moved(let sent):
                pending.removeFirst(sent)
            case .wouldBlock:
                return
            case .closed:
                // The client went away; what it did not take waits for the next one.
                Glibc.close(descriptor)
                entry.client = nil
                return
            }
        }
    }
}

/// The sockets a keeper created, by path with their device and inode, kept in a
/// file so that a restarted keeper can tell its own stale sockets from anything
/// else. A keeper unlinks a path only if the file there is a socket with the
/// identity it recorded: never a file someone else put there, never through a
/// symbolic link.
struct SocketLedger {
    let path: String
    private var sockets: [String: FileIdentity] = [:]

    struct FileIdentity: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    init(path: String) {
        self.path = path
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while bytes.count < 16 << 20 {
            let got = Glibc.read(fd, &buffer, buffer.count)
            guard got > 0 else { break }
            bytes += buffer.prefix(got)
        }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 2)
            guard fields.count == 3, let device = UInt64(fields[0]), let inode = UInt64(fields[1]) else { continue }
            sockets[String(fields[2])] = FileIdentity(device: device, inode: inode)
        }
    }

    /// The socket at `path`, if it is one.
    private static func socketIdentity(_ path: String) -> FileIdentity? {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return nil }
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Makes way for a new socket at `path`: nothing there, or a socket this ledger
    /// recorded (which is removed); anything else is an error naming the path.
    mutating func removeStale(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard let recorded = sockets[path], Self.socketIdentity(path) == recorded else {
            throw SinkKeeper.KeeperError(
                description: "\(path) already exists and consoled did not create it: remove it or choose another path"
            )
        }
        unlink(path)
        sockets[path] = nil
    }

    /// Records the socket just bound at `path`.
    mutating func record(_ path: String) throws {
        guard let identity = Self.socketIdentity(path) else {
            throw SinkKeeper.KeeperError(description: "\(path) is not a socket after bind")
        }
        sockets[path] = identity
        save()
    }

    /// Unlinks `path` if it is still the socket recorded there, and forgets it.
    mutating func remove(_ path: String) {
        if let recorded = sockets.removeValue(forKey: path), Self.socketIdentity(path) == recorded { unlink(path) }
        save()
    }

    private func save() {
        let text = sockets.sorted { $0.key < $1.key }.map { "\($0.value.device) \($0.value.inode) \($0.key)\n" }
            .joined()
        let temporary = path + ".new"
        unlink(temporary)
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let written = writeAll(fd, Array(text.utf8)[...])
        Glibc.close(fd)
        if written { rename(temporary, path) } else { unlink(temporary) }
    }
}
