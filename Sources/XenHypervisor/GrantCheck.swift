//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenMemory

/// The check every map of a grant goes through, shared by every hypervisor
/// implementation: the entry (read once, since its owner may rewrite it at any
/// time) must permit access, name the mapping domain, allow writes if asked, and
/// point inside the granter's memory.
public enum GrantCheck {
    /// Returns the granted frame, or the reason the map is refused.
    public static func frame(
        table: some SharedMemory,
        granter: DomID,
        ref: GrantRef,
        grantee: DomID,
        readOnly: Bool,
        frameCount: Int
    ) throws(HypervisorError) -> PageFrame {
        guard let index = Int(exactly: ref.rawValue), index < table.byteCount / GrantEntryV1.size else {
            throw .invalidArgument("grant reference \(ref.rawValue) is outside d\(granter.rawValue)'s grant table")
        }
        let offset = index * GrantEntryV1.size
        // flags (u16) and domid (u16) share the entry's first little-endian word.
        let word = table.load32(at: offset, ordering: .acquiring)
        let flags = GrantFlags(rawValue: UInt16(truncatingIfNeeded: word))
        let entryDomid = DomID(UInt16(truncatingIfNeeded: word >> 16))
        let frame = PageFrame(UInt64(table.load32(at: offset + GrantEntryV1.frameOffset, ordering: .relaxed)))
        guard flags.type == GrantFlags.permitAccess.rawValue else {
            throw .permissionDenied("grant \(ref.rawValue) of d\(granter.rawValue) does not permit access")
        }
        guard entryDomid == grantee else {
            throw .permissionDenied(
                "grant \(ref.rawValue) of d\(granter.rawValue) is for d\(entryDomid.rawValue), not d\(grantee.rawValue)"
            )
        }
        if flags.contains(.readOnly) && !readOnly {
            throw .permissionDenied("grant \(ref.rawValue) of d\(granter.rawValue) is read-only")
        }
        guard frame.rawValue < UInt64(frameCount) else {
            throw .invalidArgument(
                "grant \(ref.rawValue) of d\(granter.rawValue) names frame \(frame.rawValue), beyond its memory"
            )
        }
        return frame
    }

    /// Grants `grantee` access to `frame` in a v1 entry, as a granting domain (or its builder) does: frame first,
    /// then flags and domid in one release store, so a reader never sees a
    /// permitted entry with a stale frame.
    public static func grantAccess(
        table: some SharedMemory,
        ref: GrantRef,
        grantee: DomID,
        frame: PageFrame,
        flags: GrantFlags = .permitAccess
    ) {
        let offset = Int(ref.rawValue) * GrantEntryV1.size
        table.store32(
            UInt32(truncatingIfNeeded: frame.rawValue),
            at: offset + GrantEntryV1.frameOffset,
            ordering: .relaxed
        )
        table.store32(UInt32(flags.rawValue) | UInt32(grantee.rawValue) << 16, at: offset, ordering: .releasing)
    }
}
