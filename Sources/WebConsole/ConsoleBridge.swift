//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import HummingbirdWebSocket
import NIOCore
import NIOPosix
import Synchronization
import SystemExtras
import ToolstackRuntime
import XenABI
import XenHypervisor
import XenstoreClient

/// One browser tab attached to one console over a WebSocket, under the rules of
/// `conch console`: the console is found without following a path the guest wrote,
/// one session per console (a second is refused unless it asks to take over),
/// console 0's history first, then the console's bytes both ways, following
/// consoled to a new pty after a restart.
///
/// On the wire: binary messages carry the console's bytes, both ways (a text
/// message from the browser is typed as its UTF-8); text messages from the server
/// are JSON: `{"type":"attached","label":…}` once, and `{"type":"ended","reason":…,
/// "busy":…}` last, before the server closes the socket.
enum ConsoleBridge {
    /// What the browser asked for, from the upgrade request's query.
    struct Request: Sendable {
        var domain: String
        var target: ConsoleAttachment.Target
        var force: Bool

        init(query: [String: String]) throws {
            guard let domain = query["domain"], !domain.isEmpty else {
                throw WebConsoleError("which domain? (?domain=NAME or ID)")
            }
            self.domain = domain
            if let channel = query["channel"] {
                target = .channel(channel)
            } else if let text = query["console"] {
                guard let number = Int(text), number >= 0 else {
                    throw WebConsoleError("console must be a number, not '\(text)'")
                }
                target = number == 0 ? .primary : .secondary(number)
            } else {
                target = .primary
            }
            force = query["force"] == "1"
        }
    }

    struct Status: Codable {
        var type: String
        var label: String?
        var reason: String?
        var busy: Bool?
    }

    /// Serves the session until the browser leaves, the console ends, or another
    /// session takes it over; always ends with an `ended` message and a close.
    static func serve(
        _ request: Request,
        host openHost: @Sendable () async throws -> HostConnection,
        inbound: WebSocketInboundStream,
        outbound: WebSocketOutboundWriter
    ) async {
        var ending = Status(type: "ended", reason: "the browser left")
        do {
            let host = try await openHost()
            defer { host.store.close() }
            ending.reason = try await attach(request, host: host, inbound: inbound, outbound: outbound)
        } catch let refused as ConsoleSessionLock.Refused {
            ending.reason = refused.description
            ending.busy = refused.busy
        } catch {
            ending.reason = "\(error)"
        }
        try? await send(ending, to: outbound)
        try? await outbound.close(.normalClosure, reason: nil)
    }

    /// Why the relay stopped.
    enum End: Sendable {
        case browserLeft
        case takenOver
        case consoleClosed
    }

    /// The session proper: returns why it ended.
    private static func attach(
        _ request: Request,
        host: HostConnection,
        inbound: WebSocketInboundStream,
        outbound: WebSocketOutboundWriter
    ) async throws -> String {
        let domain = try await host.guest(request.domain)
        let endpoint = try await ConsoleAttachment.locate(host: host, domain: domain, target: request.target)
        let what = "\(endpoint.label) of \(domain.name)"
        let session = try ConsoleSessionLock.acquire(
            path: ConsoleSessionLock.path(
                runDirectory: host.runDirectory,
                domid: domain.domid.rawValue,
                devid: endpoint.devid
            ),
            force: request.force,
            what: what,
            takeOver: "take it over"
        )
        defer { session.release() }
        let first = try await ConsoleAttachment.open(endpoint, host: host, domain: domain)
        do {
            try await send(Status(type: "attached", label: what), to: outbound)
            if endpoint.devid == 0 {
                try await write(
                    ConsoleAttachment.history(runDirectory: host.runDirectory, domid: domain.domid),
                    to: outbound
                )
            }
        } catch {
            close(first)  // the browser went before the relay took the descriptor
            throw error
        }
        let input = ConsoleInput()
        let store = host.store
        let end = try await withThrowingTaskGroup(of: End.self) { group in
            group.addTask {
                // Browser → console. A message while the console is between ptys is lost,
                // as keys typed at `conch console` then would be.
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    switch message {
                    case .binary(let bytes): await input.write(bytes)
                    case .text(let text): await input.write(ByteBuffer(string: text))
                    }
                }
                return .browserLeft
            }
            group.addTask {
                // Console → browser, following consoled to its new pty after a restart.
                var descriptor = first
                while true {
                    try await pump(descriptor, socket: endpoint.socketPath != nil, to: outbound, input: input)
                    guard let node = endpoint.ttyNode else { return .consoleClosed }
                    let old = (try? await store.readString(node)) ?? ""
                    guard
                        let fresh = await ConsoleAttachment.followNewPty(
                            store: store,
                            frontend: ConsoleLayout.frontend(domain.domid, devid: endpoint.devid),
                            node: node,
                            old: old,
                            label: endpoint.label
                        )
                    else { return .consoleClosed }
                    descriptor = fresh
                }
            }
            group.addTask {
                while !session.takeoverRequested { try await Task.sleep(for: .milliseconds(250)) }
                return .takenOver
            }
            let end = try await group.next() ?? .browserLeft
            group.cancelAll()
            return end
        }
        switch end {
        case .browserLeft: return "the browser left"
        case .takenOver: return "\(what): taken over by another session"
        case .consoleClosed:
            let gone =
                (try? await host.store.directory(ConsoleLayout.frontend(domain.domid, devid: endpoint.devid))) == nil
            return gone ? "\(what) closed: \(domain.name) is gone" : "\(what) closed: consoled stopped serving it"
        }
    }

    /// Relays one pty or socket until it closes; its writer is `input`'s meanwhile.
    private static func pump(
        _ descriptor: Int32,
        socket: Bool,
        to outbound: WebSocketOutboundWriter,
        input: ConsoleInput
    ) async throws {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel =
                socket
                ? try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).withConnectedSocket(
                    descriptor
                ) { channel in
                    channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel(wrappingChannelSynchronously: channel) }
                }
                : try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton).takingOwnershipOfDescriptor(
                    inputOutput: descriptor
                ) { channel in
                    channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel(wrappingChannelSynchronously: channel) }
                }
        } catch {
            close(descriptor)  // NIO did not take it
            return
        }
        try await channel.executeThenClose { consoleBytes, consoleWriter in
            input.attach(consoleWriter)
            do {
                for try await bytes in consoleBytes { try await write(bytes, to: outbound) }
            } catch let error as IOError where error.errnoCode == EIO {
                // A pty whose other end closed reads EIO: consoled let go of it.
            }
            input.detach()
        }
    }

    /// Sends console bytes in frames no larger than the server's frame limit.
    static func write(_ bytes: some Collection<UInt8>, to outbound: WebSocketOutboundWriter) async throws {
        try await write(ByteBuffer(bytes: bytes), to: outbound)
    }

    static func write(_ buffer: ByteBuffer, to outbound: WebSocketOutboundWriter) async throws {
        var rest = buffer
        while rest.readableBytes > 0 {
            let chunk = rest.readSlice(length: min(rest.readableBytes, WebConsoleServer.maxFrameSize))!
            try await outbound.write(.binary(chunk))
        }
    }

    static func send(_ status: Status, to outbound: WebSocketOutboundWriter) async throws {
        try await outbound.write(.text(try JSONOutput.string(status)))
    }
}

/// Where the browser's keystrokes go: the console's current writer, if it has one.
/// A lock, not an actor: a keystroke goes straight from the WebSocket's task into
/// the console channel's writer, without a hop through another executor.
final class ConsoleInput: Sendable {
    private let writer = Mutex<NIOAsyncChannelOutboundWriter<ByteBuffer>?>(nil)

    func attach(_ writer: NIOAsyncChannelOutboundWriter<ByteBuffer>) { self.writer.withLock { $0 = writer } }
    func detach() { writer.withLock { $0 = nil } }

    func write(_ bytes: ByteBuffer) async {
        let current = writer.withLock { $0 }
        try? await current?.write(bytes)
    }
}
