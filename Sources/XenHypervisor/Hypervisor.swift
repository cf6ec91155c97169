//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenMemory

// The seam between Conch's upper layers (xenstored, consoled, the guest kernel, the
// toolstack) and whatever provides domains, memory, grants and event channels: the
// simulated hypervisor (XenSim), or a real Xen dom0 (XenLinux, over Xen's libraries
// for /dev/xen/{evtchn,gntdev,privcmd}). No caller changes its logic for either;
// executables choose, at run time, through `HypervisorFactory` (Hypervisors).

/// Why a domain shut down (`SHUTDOWN_*` in `xen/include/public/sched.h`).
public enum ShutdownReason: String, Codable, Hashable, Sendable, CaseIterable {
    case poweroff
    case reboot
    case suspend
    case crash
    case watchdog
    case softReset = "soft_reset"
}

/// A domain's life, as `xl list` shows it.
public enum DomainRunState: String, Codable, Hashable, Sendable {
    /// Built, not yet started (its guest process does not exist yet).
    case paused
    case running
    case shutdown
    /// Being destroyed.
    case dying
}

/// What it takes to create a domain.
public struct DomainSpec: Codable, Hashable, Sendable {
    public var name: String
    public var uuid: String
    /// The guest process: a host executable and its arguments.
    public var program: String
    public var arguments: [String]
    /// Extra environment for the guest process.
    public var environment: [String: String]
    /// Pages of simulated memory (each 4 KiB, each its own memfd).
    public var pageCount: Int
    public static let defaultPageCount = 64
    public var onPoweroff: ShutdownAction
    public var onReboot: ShutdownAction
    public var onCrash: ShutdownAction
    /// The domain that will map the console (grant 0) and the one that runs
    /// xenstored (grant 1): the grantees the builder writes into the grant table.
    public var consoleBackend: DomID
    public var xenstoreDomain: DomID
    /// Leave the console page zeroed (a pre-4.21 builder) instead of writing
    /// DISCONNECTED into its `connection` byte.
    public var legacyConsolePage: Bool
    /// A file the hypervisor opens and hands the guest at fd 4 (`$CONCH_KERNEL_FD`):
    /// the program the guest kernel runs, loaded by the hypervisor as Xen's builder
    /// loads a kernel image, so the guest needs no access to its path.
    public var payload: String?
    /// May the guest write to the hypervisor console (`console_io`)? Xen's default
    /// policy allows it only to the console domain (or a debug build): off.
    public var hypervisorConsole: Bool
    /// Event channels the domain may hold (xl.cfg's `max_event_channels`).
    public var maxEventChannels: Int
    public static let defaultMaxEventChannels = 1023
    /// Other domains' grants the domain may hold mapped at once (xl.cfg's
    /// `max_maptrack_frames`, 512 mappings per frame).
    public var maxGrantMappings: Int
    public static let defaultMaxGrantMappings = 1024 * 512

    public init(
        name: String,
        uuid: String,
        program: String,
        arguments: [String] = [],
        environment: [String: String] = [:],
        pageCount: Int = DomainSpec.defaultPageCount,
        onPoweroff: ShutdownAction = .destroy,
        onReboot: ShutdownAction = .restart,
        onCrash: ShutdownAction = .destroy,
        consoleBackend: DomID = .dom0,
        xenstoreDomain: DomID = .dom0,
        legacyConsolePage: Bool = false,
        payload: String? = nil,
        hypervisorConsole: Bool = false,
        maxEventChannels: Int = DomainSpec.defaultMaxEventChannels,
        maxGrantMappings: Int = DomainSpec.defaultMaxGrantMappings
    ) {
        self.name = name
        self.uuid = uuid
        self.program = program
        self.arguments = arguments
        self.environment = environment
        self.pageCount = pageCount
        self.onPoweroff = onPoweroff
        self.onReboot = onReboot
        self.onCrash = onCrash
        self.consoleBackend = consoleBackend
        self.xenstoreDomain = xenstoreDomain
        self.legacyConsolePage = legacyConsolePage
        self.payload = payload
        self.hypervisorConsole = hypervisorConsole
        self.maxEventChannels = maxEventChannels
        self.maxGrantMappings = maxGrantMappings
    }
}

/// The start-of-day facts a guest gets (Xen's `start_info`): where its console
/// and xenstore rings are and which ports signal them.
public struct StartInfo: Codable, Hashable, Sendable {
    public var domid: DomID
    public var name: String
    public var pageCount: Int
    public var grantTableFrame: PageFrame
    public var consoleFrame: PageFrame
    public var consolePort: EvtchnPort
    public var xenstoreFrame: PageFrame
    public var xenstorePort: EvtchnPort
    /// Frames the guest may use for its own rings (secondary consoles, channels).
    public var firstFreeFrame: PageFrame

    public init(
        domid: DomID,
        name: String,
        pageCount: Int,
        grantTableFrame: PageFrame,
        consoleFrame: PageFrame,
        consolePort: EvtchnPort,
        xenstoreFrame: PageFrame,
        xenstorePort: EvtchnPort,
        firstFreeFrame: PageFrame
    ) {
        self.domid = domid
        self.name = name
        self.pageCount = pageCount
        self.grantTableFrame = grantTableFrame
        self.consoleFrame = consoleFrame
        self.consolePort = consolePort
        self.xenstoreFrame = xenstoreFrame
        self.xenstorePort = xenstorePort
        self.firstFreeFrame = firstFreeFrame
    }

    /// What is known of a domain whose start-of-day frames a caller cannot see
    /// (only its id and size): every frame and port zero.
    public static func unknown(_ domid: DomID, pageCount: Int = 0) -> StartInfo {
        StartInfo(
            domid: domid,
            name: "",
            pageCount: pageCount,
            grantTableFrame: PageFrame(0),
            consoleFrame: PageFrame(0),
            consolePort: EvtchnPort(0),
            xenstoreFrame: PageFrame(0),
            xenstorePort: EvtchnPort(0),
            firstFreeFrame: PageFrame(0)
        )
    }
}

/// One domain in `list`.
public struct DomainInfo: Codable, Hashable, Sendable {
    public var domid: DomID
    public var name: String
    public var uuid: String
    public var state: DomainRunState
    public var shutdownReason: ShutdownReason?
    /// The guest process's pid while it runs.
    public var pid: Int32?
    public var start: StartInfo

    public init(
        domid: DomID,
        name: String,
        uuid: String,
        state: DomainRunState,
        shutdownReason: ShutdownReason?,
        pid: Int32?,
        start: StartInfo
    ) {
        self.domid = domid
        self.name = name
        self.uuid = uuid
        self.state = state
        self.shutdownReason = shutdownReason
        self.pid = pid
        self.start = start
    }
}

/// Virtual interrupts (`VIRQ_*` in `xen/include/public/xen.h`).
public struct Virq: RawRepresentable, Codable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `VIRQ_CON_RING` (8): the hypervisor console has new output.
    public static let consoleRing = Virq(rawValue: 8)
    /// `VIRQ_DOM_EXC` (3): a domain shut down or was destroyed.
    public static let domainException = Virq(rawValue: 3)
}

/// A bound event-channel port in the calling process. Notifying writes straight
/// to the peer's eventfd; the hypervisor is not involved.
public protocol EventChannelEndpoint: AnyObject, Sendable {
    var port: EvtchnPort { get }
    /// A descriptor that becomes readable when the peer notifies (for poll/epoll/NIO).
    var waitDescriptor: Int32 { get }
    /// Signals the remote end.
    func notify() throws
    /// Blocks until the remote end notifies (or `timeoutMilliseconds` pass; -1 =
    /// forever); returns false on time-out. Clears pending notifications.
    func wait(timeoutMilliseconds: Int32) throws -> Bool
    /// Clears pending notifications without blocking; true if there were any.
    func consumePending() throws -> Bool
}

/// A page of guest memory mapped into this process (by grant, by foreign frame
/// number, or a guest's own frame). The mapping lives as long as this object.
public final class GuestPage: RegionBackedMemory {
    public let region: RawMemoryRegion
    public let isWritable: Bool
    /// Whatever owns the mapping (an mmap, a heap page in a fake); released with us.
    private let owner: AnyObject & Sendable

    public init(region: RawMemoryRegion, isWritable: Bool, owner: AnyObject & Sendable) {
        self.region = region
        self.isWritable = isWritable
        self.owner = owner
    }
}

/// Domain lifecycle (privileged), like libxc's domctl.
public protocol DomainControl: Sendable {
    func createDomain(_ spec: DomainSpec) throws -> DomainInfo
    func unpause(_ domid: DomID) throws
    func pause(_ domid: DomID) throws
    func shutdown(_ domid: DomID, reason: ShutdownReason) throws
    func destroy(_ domid: DomID) throws
    func listDomains() throws -> [DomainInfo]
    /// Allocates an unbound port in `domid` that `remote` may bind (privileged
    /// form of alloc-unbound, used by the domain builder).
    func allocateUnboundPort(in domid: DomID, remote: DomID) throws -> EvtchnPort
}

/// Mapping other domains' pages.
public protocol ForeignMemory: Sendable {
    /// Maps `frame` of `domid` (privileged callers only, as dom0's privcmd).
    func mapForeign(_ domid: DomID, frame: PageFrame, readOnly: Bool) throws -> GuestPage
}

/// Mapping pages other domains granted to the caller.
public protocol GrantTable: Sendable {
    /// Maps grant `ref` of `domid`; the hypervisor checks the entry names the
    /// caller, permits access and, if read-only, that `readOnly` is asked for.
    func mapGrant(_ domid: DomID, ref: GrantRef, readOnly: Bool) throws -> GuestPage
}

/// What a port is connected to (`EVTCHNSTAT_*`).
public enum EventChannelStatus: Codable, Hashable, Sendable {
    case closed
    case unbound(remote: DomID)
    case interdomain(remote: DomID, remotePort: EvtchnPort)
    case virq(Virq)
}

/// Event channels of the calling domain.
public protocol EventChannels: Sendable {
    /// The state of one of the caller's ports. A peer that closes its end wakes
    /// this end once, so a waiter can notice with this call that nobody is left.
    func status(_ port: EvtchnPort) throws -> EventChannelStatus
    func allocateUnbound(remote: DomID) throws -> any EventChannelEndpoint
    func bindInterdomain(remote: DomID, remotePort: EvtchnPort) throws -> any EventChannelEndpoint
    func bindVirq(_ virq: Virq) throws -> any EventChannelEndpoint
    /// Takes up a port the builder allocated for this domain.
    func attach(_ port: EvtchnPort) throws -> any EventChannelEndpoint
    func close(_ port: EvtchnPort) throws
}

/// The hypervisor console (`console_io` and `xl dmesg`).
public protocol HypervisorConsole: Sendable {
    /// Appends guest output (`CONSOLEIO_write`); lines get a `(d<N>) ` prefix.
    func consoleWrite(_ bytes: [UInt8]) throws
    /// The console ring's contents; `clear` empties it afterwards.
    func readConsole(clear: Bool) throws -> [UInt8]
}

/// Everything a guest needs from its hypervisor.
public protocol GuestHypervisor: GrantTable, EventChannels, HypervisorConsole {
    var startInfo: StartInfo { get }
    /// Maps one of the guest's own frames.
    func mapOwnFrame(_ frame: PageFrame) throws -> GuestPage
    /// Announces the guest is shutting down, with a reason (`SCHEDOP_shutdown`).
    func requestShutdown(_ reason: ShutdownReason) throws
}

/// Everything dom0 tools and daemons need.
public protocol PrivilegedHypervisor: DomainControl, ForeignMemory, GrantTable, EventChannels, HypervisorConsole {}

/// dom0's own xenstore ring, when xenstored runs in dom0 beside the kernel that
/// set it up (Linux's `/proc/xen/xsd_kva` and `xsd_port`). The simulator has none.
public protocol LocalXenstore: Sendable {
    /// The page and the (unbound, dom0-local) port of dom0's kernel's xenstore
    /// ring; nil when this host has none.
    func localXenstoreRing() throws -> (page: GuestPage, port: EvtchnPort)?
}

/// A privileged connection that can be lost and made again: the simulated
/// hypervisor is a process that can die and be restarted (Xen's device nodes do
/// not go away). Daemons watch ``makeLossMonitor()`` and, when it reports the
/// loss, call ``reconnect()`` until it succeeds, then bind again what they had
/// bound (VIRQs) and look at the domains afresh: the old hypervisor's guests
/// died with it.
public protocol RecoverableHypervisor: AnyObject, Sendable {
    /// A new descriptor that becomes readable (end of stream) when the hypervisor
    /// goes away; the caller owns and closes it.
    func makeLossMonitor() throws -> Int32
    /// Connects again; throws while there is no hypervisor to connect to.
    func reconnect() throws
}

/// Errors every implementation reports the same way.
public enum HypervisorError: Error, Codable, Hashable, Sendable, CustomStringConvertible {
    /// The caller may not do this (an unprivileged caller, a grant naming
    /// someone else, a port owned by another domain…); the text says why.
    case permissionDenied(String)
    case noSuchDomain(DomID)
    case invalidArgument(String)
    /// The hypervisor is not running or went away.
    case unavailable(String)

    public var description: String {
        switch self {
        case .permissionDenied(let why): "permission denied: \(why)"
        case .noSuchDomain(let domid): "no such domain: \(domid)"
        case .invalidArgument(let why): "invalid argument: \(why)"
        case .unavailable(let why): "hypervisor unavailable: \(why)"
        }
    }
}
