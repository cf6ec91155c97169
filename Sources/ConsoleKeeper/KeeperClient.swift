//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import SystemExtras
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// consoled's side of the ``SinkKeeper`` control socket: one request, one reply.
/// Requests are local and answered at once, so they are made synchronously.
public final class KeeperClient: @unchecked Sendable {
    private let socket: UnixSocket
    private let lock = NSLock()

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Connects to a keeper listening at `path`.
    public init(path: String) throws {
        let fd = try UnixSocketPath.connect(path, type: Int32(SOCK_SEQPACKET.rawValue))
        socket = UnixSocket(adopting: FileDescriptor(rawValue: fd))
    }

    /// The keeper's process id (from the connection's peer credentials).
    public var keeperPID: Int32? { try? socket.peerCredentials().pid }

    /// The running sink keeper of `runDirectory`, or a new one: `conch consoled-keeper`
    /// started in its own process group, so that whatever kills consoled leaves it alive.
    public static func connectOrStart(
        runDirectory: RunDirectory,
        logLevel: String,
        logFormat: String = "text"
    ) throws -> KeeperClient {
        if let client = try? KeeperClient(path: runDirectory.keeperSocket) { return client }
        let logPath = runDirectory.logDirectory + "/consoled-keeper.log"
        let child = try ChildProcess.logging(
            to: logPath,
            executable: ChildProcess.currentExecutable(),
            arguments: [
                "consoled-keeper", "--run-dir", runDirectory.path, "--log-level", logLevel, "--log-format", logFormat,
            ],
            newProcessGroup: true
        )
        for _ in 0..<500 {
            if let client = try? KeeperClient(path: runDirectory.keeperSocket) { return client }
            if let ended = try? child.poll() {
                throw Failure(description: "the sink keeper exited (\(ended)) while starting; see \(logPath)")
            }
            usleep(10_000)
        }
        throw Failure(description: "the sink keeper did not start within 5 s; see \(logPath)")
    }

    func request(_ request: SinkKeeper.Request) throws -> (SinkKeeper.Reply, [FileDescriptor]) {
        lock.lock()
        defer { lock.unlock() }
        try socket.send(Array(try JSONEncoder().encode(request)))
        let (bytes, descriptors) = try socket.receive(maxBytes: 65536, maxDescriptors: 1)
        guard !bytes.isEmpty else { throw Failure(description: "the keeper closed its control socket") }
        let reply = try JSONDecoder().decode(SinkKeeper.Reply.self, from: Data(bytes))
        if let error = reply.error {
            for descriptor in descriptors { try? descriptor.close() }
            throw Failure(description: "keeper: \(error)")
        }
        return (reply, descriptors)
    }

    /// Publishes a socket channel: the keeper listens at `path`.
    public func open(key: ConsoleKey, path: String, name: String) throws {
        _ = try request(.init(op: .open, key: key.description, path: path, name: name))
    }

    /// Connects the channel's data stream; returns it and the `out_cons` the
    /// ring must be advanced to (bytes an earlier consoled already handed over).
    public func attach(
        key: ConsoleKey,
        outCons: UInt32,
        inProd: UInt32
    ) throws -> (stream: FileDescriptor, outCons: UInt32) {
        let (reply, descriptors) = try request(
            .init(op: .attach, key: key.description, outCons: outCons, inProd: inProd)
        )
        guard let descriptor = descriptors.first, let target = reply.outCons else {
            throw Failure(description: "the keeper's attach reply carried no data socket")
        }
        return (descriptor, target)
    }

    /// Closes a channel: the keeper drops its client and removes the socket file.
    public func close(key: ConsoleKey) {
        _ = try? request(.init(op: .close, key: key.description))
    }

    /// The socket channels that have a client connected to their socket now.
    public func connectedClients() throws -> Set<String> {
        Set(try request(.init(op: .clients)).0.clients ?? [])
    }

    /// Orderly stop: the keeper closes everything and exits.
    public func quit() {
        _ = try? request(.init(op: .quit))
    }
}
