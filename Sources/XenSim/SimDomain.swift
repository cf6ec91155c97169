//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemExtras
import SystemPackage
import XenABI
import XenHypervisor
import XenMemory
import XenRing

#if canImport(Glibc)
import Glibc
#endif

/// One simulated domain: its frames (one memfd each, so that a grant hands out
/// exactly one page and nothing else), its grant table, its guest process.
final class SimDomain {
    /// Frame layout every domain gets from the builder.
    enum Layout {
        static let grantTableFrame = PageFrame(0)
        static let consoleFrame = PageFrame(1)
        static let xenstoreFrame = PageFrame(2)
        static let firstFreeFrame = PageFrame(3)
    }

    let domid: DomID
    let spec: DomainSpec
    let frames: [SharedMemoryFile]
    /// The hypervisor's own view of the grant-table frame.
    let grantTable: MappedMemory
    var state: DomainRunState = .paused
    var shutdownReason: ShutdownReason?
    /// A reason the guest announced before exiting (`SCHEDOP_shutdown`).
    var requestedShutdown: ShutdownReason?
    var process: ChildProcess?
    var pidfd: Int32 = -1
    /// The hypervisor's end of the guest's control connection.
    var guestSocket: Int32 = -1
    var consolePort = EvtchnPort(0)
    var xenstorePort = EvtchnPort(0)
    /// Other domains' grants this domain holds mapped (Xen's maptrack entries).
    var grantMappings = 0

    init(domid: DomID, spec: DomainSpec) throws {
        guard spec.pageCount >= Int(Layout.firstFreeFrame.rawValue) + 1, spec.pageCount <= 4096 else {
            throw HypervisorError.invalidArgument("pageCount must be between 4 and 4096 (got \(spec.pageCount))")
        }
        self.domid = domid
        self.spec = spec
        var frames: [SharedMemoryFile] = []
        for index in 0..<spec.pageCount {
            frames.append(try SharedMemoryFile(pageCount: 1, name: "conch-d\(domid.rawValue)-f\(index)"))
        }
        self.frames = frames
        self.grantTable = try frames[Int(Layout.grantTableFrame.rawValue)].map()
        try seed()
    }

    /// What a domain builder does before the guest runs: grant 0 (console) to the
    /// console backend, grant 1 (xenstore) to the xenstore domain, and the console
    /// page's `connection` byte set to DISCONNECTED (Xen 4.21's builder) unless a
    /// legacy page was asked for.
    private func seed() throws {
        writeGrant(.console, to: spec.consoleBackend, frame: Layout.consoleFrame)
        writeGrant(.xenstore, to: spec.xenstoreDomain, frame: Layout.xenstoreFrame)
        if !spec.legacyConsolePage {
            let console = try frames[Int(Layout.consoleFrame.rawValue)].map()
            ConsoleRing(memory: console).connection = .disconnected
        }
    }

    func writeGrant(_ ref: GrantRef, to grantee: DomID, frame: PageFrame) {
        GrantCheck.grantAccess(table: grantTable, ref: ref, grantee: grantee, frame: frame)
    }

    /// Reads and checks grant `ref` for `grantee`; returns the frame it grants.
    func checkGrant(_ ref: GrantRef, for grantee: DomID, readOnly: Bool) throws(HypervisorError) -> PageFrame {
        try GrantCheck.frame(
            table: grantTable,
            granter: domid,
            ref: ref,
            grantee: grantee,
            readOnly: readOnly,
            frameCount: frames.count
        )
    }

    /// A descriptor for one frame: the memfd itself, or a read-only reopening of
    /// it (a read-only description cannot be mapped writable, whatever the receiver asks).
    func descriptor(for frame: PageFrame, readOnly: Bool) throws -> FileDescriptor {
        guard frame.rawValue < UInt64(frames.count) else {
            throw HypervisorError.invalidArgument("d\(domid.rawValue) has no frame \(frame.rawValue)")
        }
        let file = frames[Int(frame.rawValue)]
        guard readOnly else { return file.fileDescriptor }
        let fd = open("/proc/self/fd/\(file.fileDescriptor.rawValue)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        return FileDescriptor(rawValue: fd)
    }

    var startInfo: StartInfo {
        StartInfo(
            domid: domid,
            name: spec.name,
            pageCount: spec.pageCount,
            grantTableFrame: Layout.grantTableFrame,
            consoleFrame: Layout.consoleFrame,
            consolePort: consolePort,
            xenstoreFrame: Layout.xenstoreFrame,
            xenstorePort: xenstorePort,
            firstFreeFrame: Layout.firstFreeFrame
        )
    }

    var info: DomainInfo {
        DomainInfo(
            domid: domid,
            name: spec.name,
            uuid: spec.uuid,
            state: state,
            shutdownReason: shutdownReason,
            pid: process?.pid,
            start: startInfo
        )
    }
}
