//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What one read or send on a descriptor polled by hand did: the one errno
/// policy for them. EINTR is retried, EAGAIN is "later", and end of file or any
/// other error means the other end is gone.
public enum Transfer: Hashable, Sendable {
    /// This many bytes (more than zero) moved.
    case moved(Int)
    /// Nothing now; poll again.
    case wouldBlock
    /// End of file, or an error that will not go away: close the descriptor.
    case closed

    /// Bytes moved, zero unless ``moved(_:)``.
    public var count: Int {
        if case .moved(let count) = self { return count }
        return 0
    }

    static func from(_ result: Int) -> Transfer {
        if result > 0 { return .moved(result) }
        if result == 0 { return .closed }
        return errno == EAGAIN || errno == EWOULDBLOCK ? .wouldBlock : .closed
    }
}

/// Reads what is there, up to `count` bytes into `buffer`.
public func readAvailable(_ descriptor: Int32, into buffer: inout [UInt8], count: Int? = nil) -> Transfer {
    let limit = min(count ?? buffer.count, buffer.count)
    while true {
        // SAFETY: the pointer is used only during the call, for at most the buffer's count.
        let result = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, limit) }
        if result < 0, errno == EINTR { continue }
        return Transfer.from(result)
    }
}

/// Sends what the socket takes now of `bytes`, never raising SIGPIPE (a peer that
/// went away is ``Transfer/closed``). An empty `bytes` moves nothing: `.wouldBlock`.
public func sendAvailable(_ socket: Int32, _ bytes: some Collection<UInt8>) -> Transfer {
    guard !bytes.isEmpty else { return .wouldBlock }
    let contiguous = Array(bytes)
    while true {
        // SAFETY: the pointer is used only during the call, for the array's count.
        let result = contiguous.withUnsafeBytes { send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if result < 0, errno == EINTR { continue }
        return Transfer.from(result)
    }
}

extension UnixSocketPath {
    /// A listening socket bound at `path`, created close-on-exec (and non-blocking
    /// if asked). `afterBind` runs between bind(2) and listen(2), when the file
    /// exists but takes no connection yet. The descriptor is closed on any failure.
    public static func listen(
        at path: String,
        type: Int32 = Int32(SOCK_STREAM.rawValue),
        backlog: Int32,
        nonBlocking: Bool = false,
        afterBind: () throws -> Void = {}
    ) throws -> Int32 {
        var flags = type | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { flags |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = socket(AF_UNIX, flags, 0)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        do {
            try bind(fd, to: path)
            try afterBind()
            guard Glibc.listen(fd, backlog) == 0 else { throw Errno(rawValue: errno) }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }
}
