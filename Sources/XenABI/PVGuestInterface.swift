//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// What a 64-bit PV guest kernel finds when Xen starts it, and how it calls Xen:
/// `start_info` (`xen/include/public/xen.h`), the shared-info page and its
/// per-vCPU data, and the hypercalls Conch's PV guest (`guest/pv`) makes. Offsets
/// are for x86_64; the layout conformance tests check every one against the headers.
public enum PVStartInfo {
    /// `magic`: "xen-<version>-<platform>", 32 bytes.
    public static let magicOffset = 0
    public static let magicSize = 32
    public static let pageCountOffset = 32
    /// The shared-info page's machine address.
    public static let sharedInfoOffset = 40
    public static let flagsOffset = 48
    /// The xenstore ring's machine frame and event channel.
    public static let storeFrameOffset = 56
    public static let storeEventChannelOffset = 64
    /// Console 0's ring: machine frame and event channel (`console.domU`).
    public static let consoleFrameOffset = 72
    public static let consoleEventChannelOffset = 80
    /// Virtual address of the array of every page's machine frame (the P2M list).
    public static let frameListOffset = 104
    /// The kernel command line (xl.cfg's `extra`), NUL-terminated.
    public static let commandLineOffset = 128
    public static let commandLineSize = 1024
    public static let size = 1168
}

/// The shared-info page: a `vcpu_info` per vCPU, then the event-channel bitmaps.
public enum PVSharedInfo {
    public static let vcpuInfoSize = 64
    /// In a `vcpu_info`: "an event is pending" and "do not upcall" bytes.
    public static let upcallPendingOffset = 0
    public static let upcallMaskOffset = 1
    /// In a `vcpu_info`: its `vcpu_time_info`.
    public static let timeOffset = 32
    /// One bit per port, in 64-bit words.
    public static let eventPendingOffset = 2048
    public static let eventMaskOffset = 2560
}

/// `vcpu_time_info`: system time is `systemTime` plus the TSC ticks since
/// `tscTimestamp` scaled by `tscToSystemMultiplier` and `tscShift`. A writer makes
/// `version` odd while it updates the rest.
public enum PVTimeInfo {
    public static let versionOffset = 0
    public static let tscTimestampOffset = 8
    public static let systemTimeOffset = 16
    public static let tscToSystemMultiplierOffset = 24
    public static let tscShiftOffset = 28
}

/// Hypercall numbers (`__HYPERVISOR_*`) and the sub-operations Conch uses.
public enum Hypercall {
    public static let updateVAMapping = 14
    public static let xenVersion = 17
    public static let consoleIO = 18
    public static let grantTableOperation = 20
    public static let schedulerOperation = 29
    public static let eventChannelOperation = 32

    /// `console_io`'s write command.
    public static let consoleIOWrite = 0
    /// `sched_op` commands.
    public static let scheduleYield = 0
    public static let scheduleShutdown = 2
    public static let schedulePoll = 3
    /// `SHUTDOWN_poweroff`.
    public static let shutdownPoweroff = 0
    /// `EVTCHNOP_send`.
    public static let eventChannelSend = 4
    /// `EVTCHNOP_alloc_unbound`: `struct evtchn_alloc_unbound` is the allocating
    /// domain (u16), the remote domain (u16), and the port Xen returns (u32).
    public static let eventChannelAllocateUnbound = 6
    public static let allocateUnboundRemoteOffset = 2
    public static let allocateUnboundPortOffset = 4
    public static let allocateUnboundSize = 8
    /// `GNTTABOP_setup_table`: `struct gnttab_setup_table` is the domain (u16),
    /// how many frames (u32), a status Xen writes (i16), and where Xen writes the
    /// frames' machine numbers.
    public static let grantSetupTable = 2
    public static let setupTableCountOffset = 4
    public static let setupTableStatusOffset = 8
    public static let setupTableFrameListOffset = 16
    public static let setupTableSize = 24
    /// `update_va_mapping`'s "invalidate this one TLB entry".
    public static let invalidateOnePage = 2
    /// `struct sched_poll`: the ports' address, their count, and the absolute
    /// timeout in ns of system time (0: none).
    public static let schedulePollPortsOffset = 0
    public static let schedulePollCountOffset = 8
    public static let schedulePollTimeoutOffset = 16
    public static let schedulePollSize = 24
    /// Xen's EPERM, as a hypercall returns it (negated).
    public static let permissionDenied = -1
}
