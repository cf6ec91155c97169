//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// A Xen domain identifier (`domid_t`, a `uint16_t` in `xen/include/public/xen.h`).
///
/// Domain 0 is the privileged host side. Values from ``DomID/firstReserved`` upwards
/// are reserved by Xen for special meanings (`DOMID_SELF`, `DOMID_IO`, …) and never
/// name a real guest.
@frozen
public struct DomID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt16) { self.rawValue = value }

    /// The privileged control domain.
    public static let dom0 = DomID(0)
    /// `DOMID_FIRST_RESERVED` (0x7FF0): the first id that is not a real domain.
    public static let firstReserved = DomID(0x7FF0)
    /// `DOMID_SELF` (0x7FF0): "the calling domain" in hypercalls and xenstore requests.
    public static let domSelf = DomID(0x7FF0)
    /// `DOMID_INVALID` (0x7FF4).
    public static let invalid = DomID(0x7FF4)

    /// True for ids that can name a real domain (below `DOMID_FIRST_RESERVED`).
    @inlinable public var isRealDomain: Bool { rawValue < DomID.firstReserved.rawValue }

    @inlinable public static func < (lhs: DomID, rhs: DomID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(rawValue) }
}

/// A grant reference (`grant_ref_t`, `uint32_t` in `xen/include/public/grant_table.h`):
/// an index into the granting domain's grant table.
@frozen
public struct GrantRef: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt32) { self.rawValue = value }

    /// `GNTTAB_RESERVED_CONSOLE`: grant 0 is the console ring page, filled by the domain builder.
    public static let console = GrantRef(0)
    /// `GNTTAB_RESERVED_XENSTORE`: grant 1 is the xenstore ring page, filled by the domain builder.
    public static let xenstore = GrantRef(1)
    /// `GNTTAB_NR_RESERVED_ENTRIES`: guests allocate their own grants from here upwards.
    public static let firstUnreserved = GrantRef(8)

    public var description: String { String(rawValue) }
}

/// An event-channel port (`evtchn_port_t`, `uint32_t` in `xen/include/public/event_channel.h`).
/// Port 0 is never a valid bound port.
@frozen
public struct EvtchnPort: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt32) { self.rawValue = value }

    @inlinable public static func < (lhs: EvtchnPort, rhs: EvtchnPort) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(rawValue) }
}

/// A guest page frame number (`xen_pfn_t`): the MFN of a PV guest or the GFN of a
/// translated guest, as written in `ring-ref` for console 0 and passed to INTRODUCE.
@frozen
public struct PageFrame: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt64) { self.rawValue = value }

    @inlinable public static func < (lhs: PageFrame, rhs: PageFrame) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(rawValue) }
}

/// Size of a Xen page: every shared ring in this package lives in one 4 KiB page
/// (`XEN_PAGE_SHIFT` = 12 in `xen/include/public/io/ring.h`).
public enum XenPage {
    public static let shift = 12
    public static let size = 1 << shift
}

// Codable is not in Embedded Swift, where the PV guest kernel uses these types.
#if !hasFeature(Embedded)
extension DomID: Codable {}
extension GrantRef: Codable {}
extension EvtchnPort: Codable {}
extension PageFrame: Codable {}
#endif
