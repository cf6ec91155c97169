//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CConchShims
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A connected `AF_UNIX` stream socket that can carry file descriptors
/// (SCM_RIGHTS) beside its bytes. Used where NIO cannot help: handing memfds and
/// eventfds to another process.
public final class UnixSocket: Sendable {
    public let fileDescriptor: FileDescriptor

    public init(adopting descriptor: FileDescriptor) { fileDescriptor = descriptor }

    deinit { try? fileDescriptor.close() }

    /// A connected pair (`socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`).
    public static func pair() throws(Errno) -> (UnixSocket, UnixSocket) {
        var fds: [Int32] = [-1, -1]
        _ = try retryingSyscall {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return (
            UnixSocket(adopting: FileDescriptor(rawValue: fds[0])),
            UnixSocket(adopting: FileDescriptor(rawValue: fds[1]))
        )
    }

    /// Sends `bytes` (at least one) and `descriptors` in one message. The
    /// descriptors stay open here; the receiver gets its own copies.
    public func send(_ bytes: [UInt8], descriptors: [FileDescriptor] = []) throws(Errno) {
        precondition(!bytes.isEmpty, "SCM_RIGHTS needs at least one data byte")
        let raw = descriptors.map(\.rawValue)
        var offset = 0
        while offset < bytes.count {
            let chunk = Array(bytes[offset...])
            let sent = try retryingSyscall {
                chunk.withUnsafeBytes { buffer in
                    // Descriptors travel with the first chunk only.
                    (offset == 0 ? raw : []).withUnsafeBufferPointer { fds in
                        cconch_send_fds(
                            fileDescriptor.rawValue,
                            fds.baseAddress,
                            fds.count,
                            buffer.baseAddress,
                            buffer.count
                        )
                    }
                }
            }
            offset += sent
        }
    }

    /// Receives up to `maxBytes` bytes and any descriptors sent with them. An
    /// empty array with no descriptors means the peer closed the connection.
    public func receive(
        maxBytes: Int,
        maxDescriptors: Int = 8
    ) throws(Errno) -> (bytes: [UInt8], descriptors: [FileDescriptor]) {
        var bytes = [UInt8](repeating: 0, count: maxBytes)
        var fds = [Int32](repeating: -1, count: maxDescriptors)
        var received = 0
        let got = try retryingSyscall {
            bytes.withUnsafeMutableBytes { buffer in
                fds.withUnsafeMutableBufferPointer { fdBuffer in
                    cconch_recv_fds(
                        fileDescriptor.rawValue,
                        fdBuffer.baseAddress,
                        fdBuffer.count,
                        &received,
                        buffer.baseAddress,
                        buffer.count
                    )
                }
            }
        }
        bytes.removeLast(maxBytes - got)
        return (bytes, fds.prefix(received).map { FileDescriptor(rawValue: $0) })
    }

    /// Receives exactly `count` bytes (descriptors, if any, arrive with the
    /// first part). Throws `Errno.connectionReset` if the peer closes early.
    public func receiveExactly(
        _ count: Int,
        maxDescriptors: Int = 8
    ) throws(Errno) -> (bytes: [UInt8], descriptors: [FileDescriptor]) {
        var bytes: [UInt8] = []
        var descriptors: [FileDescriptor] = []
        while bytes.count < count {
            let part = try receive(maxBytes: count - bytes.count, maxDescriptors: maxDescriptors)
            if part.bytes.isEmpty {
                for descriptor in descriptors + part.descriptors { try? descriptor.close() }
                throw Errno.connectionReset
            }
            bytes += part.bytes
            descriptors += part.descriptors
        }
        return (bytes, descriptors)
    }

    /// The peer's pid, uid and gid (SO_PEERCRED), as captured at connect time.
    public func peerCredentials() throws(Errno) -> (pid: Int32, uid: UInt32, gid: UInt32) {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        _ = try retryingSyscall { cconch_peer_credentials(fileDescriptor.rawValue, &pid, &uid, &gid) }
        return (pid, uid, gid)
    }
}

/// Connecting and binding `AF_UNIX` sockets by path, in one place.
public enum UnixSocketPath {
    /// Fills a `sockaddr_un` for `path`; fails with ENAMETOOLONG past 107 bytes.
    public static func address(_ path: String) throws(Errno) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Errno.fileNameTooLong }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            // SAFETY: the length was checked against sun_path above; the rest stays zero.
            raw.copyBytes(from: bytes)
        }
        return address
    }

    /// A new socket of `type` (`SOCK_STREAM` or `SOCK_SEQPACKET`) connected to
    /// `path`; the caller owns the descriptor.
    /// Whether a server accepts connections at `path` (stream or seqpacket). A
    /// daemon's socket file appears at bind(2), before listen(2): the file
    /// existing is not yet readiness.
    public static func isListening(_ path: String) -> Bool {
        for type in [Int32(SOCK_STREAM.rawValue), Int32(SOCK_SEQPACKET.rawValue)] {
            do {
                close(try connect(path, type: type))
                return true
            } catch {
                if error != .protocolWrongTypeForSocket { return false }
            }
        }
        return false
    }

    public static func connect(_ path: String, type: Int32 = Int32(SOCK_STREAM.rawValue)) throws(Errno) -> Int32 {
        var address = try address(path)
        let fd = socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw Errno(rawValue: code)
        }
        return fd
    }

    /// One request, one answer: connects to the stream socket at `path`, sends
    /// `request` (if any), and returns everything the server sends until it closes
    /// (consoled's stats and control sockets speak this way).
    public static func exchange(_ path: String, request: [UInt8]? = nil) throws(Errno) -> [UInt8] {
        let fd = try connect(path)
        defer { close(fd) }
        if let request, !writeAll(fd, request[...]) { throw Errno(rawValue: errno) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = read(fd, &buffer, buffer.count)
            if got > 0 {
                result += buffer.prefix(got)
            } else if got < 0 && errno == EINTR {
                continue
            } else {
                return result
            }
        }
    }

    /// Binds `fd` to `path`.
    public static func bind(_ fd: Int32, to path: String) throws(Errno) {
        var address = try address(path)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else { throw Errno(rawValue: errno) }
    }
}
