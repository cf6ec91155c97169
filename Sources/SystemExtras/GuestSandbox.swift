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

/// The wall a simulated guest runs behind: what Xen enforces by being a hypervisor,
/// the simulator enforces with namespaces and a uid (docs/SECURITY.md).
///
/// A guest process gets new user, mount, pid, network, IPC and UTS namespaces. In
/// its view the host's filesystem is read-only except `writable`; `hidden`
/// directories (the run directory, the logs) are covered by an empty tmpfs it
/// cannot open; `/run`, `/proc`, `/dev/pts` and `/dev/shm` are its own. Its pid 1
/// is a small init that dies with the hypervisor, so killing it ends every process
/// of the domain, including ones that left its process group.
///
/// Its uid: when the hypervisor runs as root, `uidBase + domid` (and the same gid),
/// a uid nobody else has, so file permissions also keep it out of the host's
/// files and other guests'. An ordinary user cannot hand out other uids, so as
/// one the guest keeps the user's uid inside its namespaces; the namespaces, the
/// hidden directories (the user's home among them) and the daemons' peer checks
/// then carry the isolation.
public struct GuestSandbox: Sendable, Hashable {
    /// Directories covered by an empty tmpfs in the guest's view.
    public var hidden: [String]
    /// Directories the guest may write to (everything else of the host is read-only).
    public var writable: [String]
    /// Replaced by a private tmpfs the guest owns (its devices directory lives there).
    public var privateDirectory: String
    /// First uid (and gid) for guests when running as root.
    public var uidBase: UInt32

    /// The default base: far above any account or subordinate-uid range a
    /// distribution hands out.
    public static let defaultUIDBase: UInt32 = 1_000_000_000

    /// Where a sandboxed guest kernel exposes its devices (`$CONCH_GUEST_DEV`).
    public static let guestDeviceDirectory = "/run/conch/dev"

    public init(
        hidden: [String],
        writable: [String] = ["/tmp", "/var/tmp"],
        privateDirectory: String = "/run",
        uidBase: UInt32 = GuestSandbox.defaultUIDBase
    ) {
        self.hidden = hidden
        self.writable = writable
        self.privateDirectory = privateDirectory
        self.uidBase = uidBase
    }

    /// The sandbox for guests of the stack in `runDirectory`: the run directory and
    /// `extraHidden` disappear; as an ordinary user, so does `$HOME`.
    public static func forHost(
        runDirectory: RunDirectory,
        extraHidden: [String] = [],
        environment: [String: String],
        uidBase: UInt32 = defaultUIDBase
    ) -> GuestSandbox {
        var hidden = [runDirectory.path] + extraHidden
        if geteuid() != 0, let home = environment["HOME"], home != "/", !home.isEmpty { hidden.append(home) }
        return GuestSandbox(hidden: hidden, uidBase: uidBase)
    }

    /// The uid and gid guest `index` runs as.
    public func identity(forGuest index: UInt32) -> (uid: UInt32, gid: UInt32) {
        if geteuid() == 0 { return (uidBase &+ index, uidBase &+ index) }
        return (getuid(), getgid())
    }
}

extension ChildProcess {
    /// Starts `executable` (already opened by the caller, so its path need not be
    /// reachable by the guest) behind `sandbox`, as guest `index`.
    ///
    /// - Parameters:
    ///   - arguments: argv, including argv[0].
    ///   - environment: the whole environment (nothing is inherited).
    ///   - descriptors: guest fd number → descriptor here; nothing else crosses over.
    /// - Throws: ``SpawnFailure`` naming the step that failed (a missing
    ///   namespace permission, a mount, the exec itself).
    public static func sandboxed(
        _ sandbox: GuestSandbox,
        guestIndex index: UInt32,
        executable: FileDescriptor,
        arguments: [String],
        environment: [String: String],
        descriptors: [Int32: FileDescriptor],
        hostname: String?
    ) throws -> ChildProcess {
        let (uid, gid) = sandbox.identity(forGuest: index)
        let placements = descriptors.sorted { $0.key < $1.key }
        let targets = placements.map(\.key)
        let sources = placements.map(\.value.rawValue)
        let environmentLines = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        var statusDescriptor: Int32 = -1
        var message = [CChar](repeating: 0, count: 1024)
        let pid: pid_t = withCStrings(arguments) { argv in
            withCStrings(environmentLines) { envp in
                withCStrings(sandbox.hidden) { hidden in
                    withCStrings(sandbox.writable) { writable in
                        sandbox.privateDirectory.withCString { privateDirectory in
                            withOptionalCString(hostname) { hostname in
                                targets.withUnsafeBufferPointer { targets in
                                    sources.withUnsafeBufferPointer { sources in
                                        // SAFETY: every pointer in `spec` refers to storage that lives
                                        // until the spawn returns; the C side copies nothing after that.
                                        var spec = cconch_sandbox(
                                            argv: argv,
                                            envp: envp,
                                            exec_fd: executable.rawValue,
                                            fd_targets: targets.baseAddress,
                                            fd_sources: sources.baseAddress,
                                            fd_count: Int32(targets.count),
                                            uid: uid,
                                            gid: gid,
                                            drop_supplementary_groups: geteuid() == 0 ? 1 : 0,
                                            hidden: hidden,
                                            writable: writable,
                                            private_directory: privateDirectory,
                                            hostname: hostname
                                        )
                                        return cconch_spawn_sandboxed(
                                            &spec,
                                            &statusDescriptor,
                                            &message,
                                            message.count
                                        )
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        guard pid > 0 else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw SpawnFailure(description: text.isEmpty ? "cannot start the guest: errno \(errno)" : text)
        }
        return ChildProcess(pid: pid, isGroupLeader: true, statusDescriptor: statusDescriptor)
    }

    /// Why a sandboxed spawn failed, in the words of the step that failed.
    public struct SpawnFailure: Error, CustomStringConvertible {
        public let description: String
    }
}

/// `withCStringArray` for C declarations that take `const char *const *`.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    withCStringArray(strings) { pointers in
        pointers.withUnsafeBufferPointer { buffer in
            // SAFETY: `char *` and `const char *` have the same layout; the array lives for the call.
            UnsafeRawPointer(buffer.baseAddress!).withMemoryRebound(
                to: UnsafePointer<CChar>?.self,
                capacity: buffer.count
            ) { body($0) }
        }
    }
}

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}
