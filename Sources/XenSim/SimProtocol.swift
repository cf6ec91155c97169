//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CConchShims
import Foundation
import SystemPackage
import XenABI
import XenHypervisor

#if canImport(Glibc)
import Glibc
#endif

// The simulated hypervisor's control protocol: one JSON request per SOCK_SEQPACKET
// message, one JSON response back, with file descriptors (memfd pages, eventfds)
// riding along as SCM_RIGHTS. Only control operations use it; data moves through
// shared pages and notifications through eventfds, never through this socket.

/// A request to the hypervisor. Each caller acts as one domain: connections on
/// `hypervisor.sock` are privileged dom0; a guest's connection (fd 3 of its
/// process) is bound to its domid by the hypervisor when it spawns the process.
enum SimRequest: Codable, Sendable {
    case identify
    case startInfo
    // Privileged.
    case createDomain(DomainSpec)
    case unpause(DomID)
    case pause(DomID)
    case shutdownDomain(DomID, ShutdownReason)
    case destroy(DomID)
    case listDomains
    case allocateUnboundPort(domid: DomID, remote: DomID)
    case mapForeign(domid: DomID, frame: PageFrame, readOnly: Bool)
    case readConsole(from: Int, clear: Bool)
    // Any caller, as its own domain.
    case mapGrant(domid: DomID, ref: GrantRef, readOnly: Bool)
    /// A guest released a grant mapping (its maptrack count goes down).
    case unmapGrant
    case mapOwnFrame(PageFrame)
    case allocateUnbound(remote: DomID)
    case bindInterdomain(remote: DomID, remotePort: EvtchnPort)
    case bindVirq(Virq)
    case attachPort(EvtchnPort)
    case closePort(EvtchnPort)
    case portStatus(EvtchnPort)
    case consoleWrite(Data)
    case requestShutdown(ShutdownReason)
}

/// A peer broke the framing.
struct SimWireError: Error, CustomStringConvertible {
    let description: String
}

/// The hypervisor's answer. `port` carries two descriptors (notify, wait) —
/// one (wait) for a VIRQ; `page` carries the page's descriptor.
enum SimResponse: Codable, Sendable {
    case ok
    case identity(domid: DomID, privileged: Bool)
    case startInfo(StartInfo)
    case domain(DomainInfo)
    case domains([DomainInfo])
    case port(EvtchnPort)
    case portStatus(EventChannelStatus)
    case page(readOnly: Bool)
    /// A chunk of the console ring starting at the requested offset, and how many
    /// bytes follow it.
    case console(Data, remaining: Int)
    case error(HypervisorError)
}

/// Framing for SEQPACKET sockets carrying JSON plus descriptors.
///
/// A message of any size travels as one or more packets: a flag byte (0: the last
/// packet of this message, 1: more follow) and up to ``chunkSize`` bytes of it.
/// Descriptors ride on the first packet. The receiver reassembles up to a limit it
/// chooses, so a big answer (a thousand domains, long names) needs no big buffer
/// and a peer announcing an endless message only loses its connection.
enum SimWire {
    /// Bytes of a message in one packet.
    static let chunkSize = 60 * 1024
    /// Largest message a privileged peer (dom0 tools and daemons) is trusted to send.
    static let privilegedLimit = 64 << 20
    /// Largest request a guest may send: a console write chunk and some framing.
    static let guestLimit = 256 * 1024
    /// Console reads and writes are split below this many bytes per request.
    static let consoleChunk = 64 * 1024

    static let encoder = JSONEncoder()
    static let decoder = JSONDecoder()

    /// One packet: the flag byte then its part of the message.
    struct Packet {
        var bytes: [UInt8]
        var descriptors: [FileDescriptor]
        var isLast: Bool { bytes.first == 0 }
    }

    /// `value` encoded and cut into packets (descriptors on the first).
    static func packets(_ value: some Encodable, descriptors: [FileDescriptor] = []) throws -> [Packet] {
        let encoded = Array(try encoder.encode(value))
        var packets: [Packet] = []
        var offset = 0
        repeat {
            let end = min(encoded.count, offset + chunkSize)
            let flag: UInt8 = end == encoded.count ? 0 : 1
            packets.append(
                Packet(bytes: [flag] + encoded[offset..<end], descriptors: packets.isEmpty ? descriptors : [])
            )
            offset = end
        } while offset < encoded.count
        return packets
    }

    /// Sends one packet; false if the socket would block (only with `blocking: false`).
    static func send(_ packet: Packet, on socket: Int32, blocking: Bool) throws -> Bool {
        let raw = packet.descriptors.map(\.rawValue)
        let sent = packet.bytes.withUnsafeBytes { buffer in
            raw.withUnsafeBufferPointer { fds in
                cconch_send_fds_flags(
                    socket,
                    fds.baseAddress,
                    fds.count,
                    buffer.baseAddress,
                    buffer.count,
                    blocking ? 0 : Int32(MSG_DONTWAIT)
                )
            }
        }
        if sent < 0, !blocking, errno == EAGAIN || errno == EWOULDBLOCK { return false }
        guard sent == packet.bytes.count else { throw Errno(rawValue: sent < 0 ? errno : EMSGSIZE) }
        return true
    }

    /// Sends a whole message, blocking until it is out (clients).
    static func send(_ value: some Encodable, descriptors: [FileDescriptor] = [], on socket: Int32) throws {
        for packet in try packets(value, descriptors: descriptors) { _ = try send(packet, on: socket, blocking: true) }
    }

    /// Receives one packet; nil at end of stream.
    static func receivePacket(on socket: Int32) throws -> Packet? {
        var buffer = [UInt8](repeating: 0, count: chunkSize + 1)
        var fds = [Int32](repeating: -1, count: 4)
        var count = 0
        let got = buffer.withUnsafeMutableBytes { bytes in
            fds.withUnsafeMutableBufferPointer { fdBuffer in
                cconch_recv_fds(socket, fdBuffer.baseAddress, fdBuffer.count, &count, bytes.baseAddress, bytes.count)
            }
        }
        if got < 0 { throw Errno(rawValue: errno) }
        let descriptors = fds.prefix(count).map { FileDescriptor(rawValue: $0) }
        if got == 0 {
            for descriptor in descriptors { try? descriptor.close() }
            return nil
        }
        buffer.removeLast(buffer.count - got)
        return Packet(bytes: buffer, descriptors: descriptors)
    }

    /// Reassembles packets into messages, up to `limit` bytes each.
    struct Assembler {
        let limit: Int
        private var bytes: [UInt8] = []
        private var descriptors: [FileDescriptor] = []

        init(limit: Int) { self.limit = limit }

        /// Adds a packet; returns the message and its descriptors once complete.
        mutating func add(_ packet: Packet) throws -> ([UInt8], [FileDescriptor])? {
            descriptors += packet.descriptors
            guard packet.bytes.count >= 1, packet.bytes[0] <= 1 else {
                discard()
                throw SimWireError(description: "a packet without a valid flag byte")
            }
            bytes += packet.bytes.dropFirst()
            guard bytes.count <= limit else {
                discard()
                throw SimWireError(description: "a message longer than \(limit) bytes")
            }
            guard packet.isLast else { return nil }
            defer {
                bytes = []
                descriptors = []
            }
            return (bytes, descriptors)
        }

        /// Drops a partial message, closing any descriptors it carried.
        mutating func discard() {
            for descriptor in descriptors { try? descriptor.close() }
            descriptors = []
            bytes = []
        }
    }

    /// Decodes a complete message; descriptors are closed if it does not decode.
    static func decode<T: Decodable>(
        _ type: T.Type,
        _ message: ([UInt8], [FileDescriptor])
    ) throws -> (T, [FileDescriptor]) {
        do {
            return (try decoder.decode(T.self, from: Data(message.0)), message.1)
        } catch {
            for descriptor in message.1 { try? descriptor.close() }
            throw error
        }
    }

    /// Receives one whole message, blocking (clients); nil at end of stream.
    static func receive<T: Decodable>(
        _ type: T.Type,
        on socket: Int32,
        limit: Int = privilegedLimit
    ) throws
        -> (T, [FileDescriptor])?
    {
        var assembler = Assembler(limit: limit)
        while true {
            guard let packet = try receivePacket(on: socket) else {
                assembler.discard()
                return nil
            }
            if let message = try assembler.add(packet) { return try decode(type, message) }
        }
    }

    /// A connected SEQPACKET pair.
    static func socketPair() throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw Errno(rawValue: errno)
        }
        return (fds[0], fds[1])
    }
}

/// The hypervisor's reading of a peer's packets, as a function of the bytes alone:
/// what `serve` does with each packet before a request is handled (reassembly
/// under the guest limit, then decoding). Public for fuzzing and tests.
public enum SimRequestDecoder {
    /// What came of a stream of packets.
    public struct Outcome: Sendable, Hashable {
        /// Requests decoded.
        public var requests = 0
        /// Connections the hypervisor would have dropped (a bad frame or message).
        public var dropped = 0
    }

    /// Feeds `packets` (each a SEQPACKET datagram as a guest would send it) to one
    /// guest connection's assembler.
    public static func decode(packets: [[UInt8]]) -> Outcome {
        var outcome = Outcome()
        var assembler = SimWire.Assembler(limit: SimWire.guestLimit)
        for bytes in packets {
            do {
                guard let message = try assembler.add(SimWire.Packet(bytes: bytes, descriptors: [])) else { continue }
                _ = try SimWire.decode(SimRequest.self, message)
                outcome.requests += 1
            } catch {
                // The daemon drops such a connection; a fresh one starts clean.
                outcome.dropped += 1
                assembler = SimWire.Assembler(limit: SimWire.guestLimit)
            }
        }
        return outcome
    }
}
