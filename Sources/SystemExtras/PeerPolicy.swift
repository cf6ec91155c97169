//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import CConchShims
import NIOCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Who may talk to a Conch daemon's socket: the host's toolstack, meaning a
/// process of this user (or root) in this user namespace. Guests are not —
/// whatever their uid looks like from inside, they live in a user namespace of
/// their own (docs/SECURITY.md) — and neither is any other local user.
///
/// Checked on every accepted connection of every daemon socket, on top of the
/// sockets' 0600 mode and the run directory's 0700: a second wall, in case a
/// socket path ends up where a guest or another user can reach it.
public enum PeerPolicy {
    /// The peer of a connected Unix socket, as the kernel recorded it at connect.
    public struct Peer: Sendable, Hashable, CustomStringConvertible {
        public var pid: Int32
        public var uid: UInt32
        public var gid: UInt32
        public var description: String { "pid \(pid), uid \(uid)" }
    }

    /// Why a peer was refused, for the log and for the peer.
    public struct Refusal: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// The peer of `socket`; nil if the kernel cannot say (not a Unix socket).
    public static func peer(of socket: Int32) -> Peer? {
        var peer = Peer(pid: 0, uid: 0, gid: 0)
        guard cconch_peer_credentials(socket, &peer.pid, &peer.uid, &peer.gid) == 0 else { return nil }
        return peer
    }

    /// nil if the peer of `socket` is the host's toolstack, else why not.
    public static func checkHostToolstack(_ socket: Int32) -> Refusal? {
        guard let peer = peer(of: socket) else { return Refusal(description: "the peer's credentials are unknown") }
        let pidfd = cconch_peer_pidfd(socket)
        defer { if pidfd >= 0 { close(pidfd) } }
        return checkHostToolstack(peer, pidfd: pidfd >= 0 ? pidfd : nil)
    }

    /// nil if `peer` is the host's toolstack, else why not. With `pidfd` (the
    /// peer's, from SO_PEERPIDFD) the namespace check cannot be fooled by a pid
    /// reused after the peer exited.
    public static func checkHostToolstack(_ peer: Peer, pidfd: Int32?) -> Refusal? {
        // The kernel translates the peer's uid into ours: 0 is real root, never a
        // guest's "root" (that one shows its host uid).
        if peer.uid == 0 { return nil }
        guard peer.uid == geteuid() else {
            return Refusal(description: "\(peer) is another user (this daemon serves uid \(geteuid()) and root)")
        }
        guard let theirs = userNamespace(of: "/proc/\(peer.pid)/ns/user"),
            let ours = userNamespace(of: "/proc/self/ns/user")
        else {
            return Refusal(description: "\(peer): its user namespace cannot be read (has it exited?)")
        }
        if let pidfd, cconch_pidfd_alive(pidfd) == 0 {
            return Refusal(description: "\(peer) exited before its namespace could be checked")
        }
        guard theirs == ours else {
            return Refusal(description: "\(peer) is in another user namespace (a guest?)")
        }
        return nil
    }

    private static func userNamespace(of path: String) -> [UInt64]? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return [UInt64(info.st_dev), UInt64(info.st_ino)]
    }
}

extension Channel {
    /// nil if this Unix-socket channel's peer is the host's toolstack, else why not.
    /// Call from the channel's initializer, on its event loop.
    public func checkHostToolstackPeer() -> EventLoopFuture<PeerPolicy.Refusal?> {
        guard let provider = self as? any SocketOptionProvider else {
            return eventLoop.makeSucceededFuture(PeerPolicy.Refusal(description: "not a socket"))
        }
        let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(SO_PEERCRED)
        )
        let pidfd: EventLoopFuture<Int32> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(77)  // SO_PEERPIDFD
        )
        return credentials.and(pidfd.map { Optional($0) }.recover { _ in nil }).map { credentials, pidfd in
            defer { if let pidfd { Glibc.close(pidfd) } }
            let peer = PeerPolicy.Peer(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
            return PeerPolicy.checkHostToolstack(peer, pidfd: pidfd)
        }.recover { error in PeerPolicy.Refusal(description: "the peer's credentials are unknown: \(error)") }
    }
}

/// `struct ucred`, as SO_PEERCRED fills it.
private struct PeerCredentials: Sendable {
    var pid: Int32
    var uid: UInt32
    var gid: UInt32
}
