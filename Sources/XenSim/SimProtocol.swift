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
enum SimWire {
    /// Largest message either side sends; console reads and writes are chunked below it.
    static let maxMessage = 192 * 1024
    static let consoleChunk = 64 * 1024

    static let encoder = JSONEncoder()
    static let decoder = JSONDecoder()

    static func send(_ value: some Encodable, descriptors: [FileDescriptor] = [], on socket: Int32) throws {
        let bytes = Array(try encoder.encode(value))
        precondition(bytes.count <= maxMessage, "simulated-hypervisor message too large")
        let raw = descriptors.map(\.rawValue)
        let sent = bytes.withUnsafeBytes { buffer in
            raw.withUnsafeBufferPointer { fds in
                cconch_send_fds(socket, fds.baseAddress, fds.count, buffer.baseAddress, buffer.count)
            }
        }
        guard sent == bytes.count else { throw Errno(rawValue: sent < 0 ? errno : EMSGSIZE) }
    }

    /// Receives one message; nil at end of stream.
    static func receive<T: Decodable>(_ type: T.Type, on socket: Int32) throws -> (T, [FileDescriptor])? {
        var buffer = [UInt8](repeating: 0, count: maxMessage)
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
        do {
            return (try decoder.decode(T.self, from: Data(buffer.prefix(got))), descriptors)
        } catch {
            for descriptor in descriptors { try? descriptor.close() }
            throw error
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
