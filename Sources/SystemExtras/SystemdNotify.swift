//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// Tells systemd a `Type=notify` service is ready (sd_notify's `READY=1`): one
/// datagram to the Unix socket systemd names in `$NOTIFY_SOCKET` (a leading `@`
/// means the abstract namespace). Without the variable — not started by systemd —
/// it does nothing. Units ordered after Conch's daemons (`xen-init-dom0` after
/// `xenstored.service`, say) start only once the daemon accepts connections.
public enum SystemdNotify {
    /// Sends `READY=1`; returns whether a notification went out. A failure is not
    /// fatal to the daemon, only to systemd's view of it (it times the start out).
    @discardableResult
    public static func ready(environment: [String: String]? = nil) -> Bool {
        let socketPath: String?
        if let environment {
            socketPath = environment["NOTIFY_SOCKET"]
        } else {
            socketPath = getenv("NOTIFY_SOCKET").map { String(cString: $0) }
        }
        guard let socketPath, !socketPath.isEmpty else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return false }
        // SAFETY: sun_path is a fixed-size tuple of `capacity` bytes; we copy at
        // most capacity - 1 bytes into it through a pointer scoped to this call.
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in pathBytes.enumerated() { raw[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + (pathBytes.first == 0 ? 0 : 1))
        let message = Array("READY=1\n".utf8)
        // SAFETY: `address` and `message` outlive the sendto call that reads them.
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes { bytes in
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        return sent == message.count
    }
}
