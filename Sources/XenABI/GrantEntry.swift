//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// A version-1 grant-table entry, `struct grant_entry_v1` in
/// `xen/include/public/grant_table.h`.
///
/// ```
///  offset  size  field
///       0     2  flags   GTF_* (type in bits 0-1, then permission bits)
///       2     2  domid   the domain being granted access
///       4     4  frame   the granted frame number
/// ```
///
/// A grant table is an array of these, 512 per 4 KiB page.
public struct GrantEntryV1: Hashable, Sendable {
    public var flags: GrantFlags
    public var domid: DomID
    public var frame: UInt32

    public init(flags: GrantFlags, domid: DomID, frame: UInt32) {
        self.flags = flags
        self.domid = domid
        self.frame = frame
    }

    public static let size = 8
    public static let flagsOffset = 0
    public static let domidOffset = 2
    public static let frameOffset = 4
    /// Entries in one 4 KiB grant-table page.
    public static let perPage = XenPage.size / size
}

/// `GTF_*` bits of a grant entry's `flags` field.
@frozen
public struct GrantFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Mask of the type field (`GTF_type_mask`, bits 0-1).
    public static let typeMask: UInt16 = 3
    /// `GTF_invalid` (0): the entry grants nothing.
    public static let invalid = GrantFlags([])
    /// `GTF_permit_access` (1): the grantee may map `frame`.
    public static let permitAccess = GrantFlags(rawValue: 1)
    /// `GTF_accept_transfer` (2).
    public static let acceptTransfer = GrantFlags(rawValue: 2)
    /// `GTF_transitive` (3), v2 only.
    public static let transitive = GrantFlags(rawValue: 3)
    /// `GTF_readonly` (1 << 2): the grantee may only map read-only.
    public static let readOnly = GrantFlags(rawValue: 1 << 2)
    /// `GTF_reading` (1 << 3): set by Xen while the grant is mapped for reading.
    public static let reading = GrantFlags(rawValue: 1 << 3)
    /// `GTF_writing` (1 << 4): set by Xen while the grant is mapped for writing.
    public static let writing = GrantFlags(rawValue: 1 << 4)

    /// The entry's type field (`flags & GTF_type_mask`).
    @inlinable public var type: UInt16 { rawValue & GrantFlags.typeMask }
}
