//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenHypervisor
import XenMemory

#if canImport(Glibc)
import Glibc
#endif

/// What Linux's xenfs (`/proc/xen`) says about the Xen host this process runs
/// on. Needs none of Xen's libraries, so every build can ask.
public enum XenHost {
    /// Whether this is a Xen control domain: `/proc/xen/capabilities` says `control_d`.
    public static var isControlDomain: Bool {
        guard let text = readSmallFile("/proc/xen/capabilities") else { return false }
        return text.split(whereSeparator: \.isWhitespace).contains("control_d")
    }

    /// dom0's own xenstore ring, set up by its kernel for a xenstored in dom0:
    /// the page (`/proc/xen/xsd_kva`) and the dom0-local unbound port
    /// (`/proc/xen/xsd_port`); nil when this kernel has none.
    public static func localXenstoreRing() throws -> (page: GuestPage, port: EvtchnPort)? {
        guard let text = readSmallFile("/proc/xen/xsd_port"),
            let port = text.split(whereSeparator: \.isWhitespace).first.flatMap({ UInt32($0) })
        else { return nil }
        let fd = open("/proc/xen/xsd_kva", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw HypervisorError.unavailable("open /proc/xen/xsd_kva: \(lastError())") }
        defer { close(fd) }
        let base = mmap(nil, XenPage.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let base, base != MAP_FAILED else {
            throw HypervisorError.unavailable("mmap /proc/xen/xsd_kva: \(lastError())")
        }
        let owner = Mapping { _ = munmap(base, XenPage.size) }
        // SAFETY: the mapping is one page at `base`, shared with dom0's kernel and
        // valid until the owner unmaps it; all access to it goes through GuestPage.
        let page = GuestPage(
            region: RawMemoryRegion(base: base, byteCount: XenPage.size),
            isWritable: true,
            owner: owner
        )
        return (page, EvtchnPort(port))
    }

    static func lastError() -> String { String(cString: strerror(errno)) }

    /// The first 4 KiB of a small /proc file, nil if it cannot be read.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        // SAFETY: read writes at most buffer.count bytes into the array's storage.
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer.prefix(count), as: UTF8.self)
    }
}

/// A mapping's owner: unmaps when the last reference goes.
final class Mapping: @unchecked Sendable {
    let unmap: () -> Void
    init(_ unmap: @escaping () -> Void) { self.unmap = unmap }
    deinit { unmap() }
}
