//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// The access a permission entry grants: the letter of a permission string.
///
/// | Letter | Case | Read | Write |
/// |---|---|---|---|
/// | `n` | ``none`` | no | no |
/// | `r` | ``read`` | yes | no |
/// | `w` | ``write`` | no | yes |
/// | `b` | ``both`` | yes | yes |
public enum XenstoreAccess: UInt8, Hashable, Sendable, CaseIterable {
    case none = 0b00
    case read = 0b01
    case write = 0b10
    case both = 0b11

    /// The ASCII letter used on the wire.
    public var letter: Character {
        switch self {
        case .none: "n"
        case .read: "r"
        case .write: "w"
        case .both: "b"
        }
    }

    public init?(letter: UInt8) {
        switch letter {
        case UInt8(ascii: "n"): self = .none
        case UInt8(ascii: "r"): self = .read
        case UInt8(ascii: "w"): self = .write
        case UInt8(ascii: "b"): self = .both
        default: return nil
        }
    }

    public var canRead: Bool { rawValue & 0b01 != 0 }
    public var canWrite: Bool { rawValue & 0b10 != 0 }

    /// The union of two grants (a SET_TARGET'd domain gets its own rights plus its target's).
    public func union(_ other: XenstoreAccess) -> XenstoreAccess {
        XenstoreAccess(rawValue: rawValue | other.rawValue) ?? .both
    }
}

/// One permission entry, for example `r5` (domain 5 may read) or `b0`.
///
/// Wire form: the access letter followed by the domid. cxenstored parses the number with
/// `strtol(…, 0)`, so `0x1f` (hex) and `017` (octal) are accepted as well as decimal. We
/// require the whole rest of the string to be that number and to fit a domid (0…65535);
/// we always print decimal.
public struct XenstorePermission: Hashable, Sendable, CustomStringConvertible {
    public var domid: DomID
    public var access: XenstoreAccess

    public init(_ access: XenstoreAccess, _ domid: DomID) {
        self.access = access
        self.domid = domid
    }

    /// Parses one permission string (without its NUL); nil if malformed.
    public init?(wire bytes: some Collection<UInt8>) {
        guard let first = bytes.first, let access = XenstoreAccess(letter: first),
            let number = XenstorePermission.parseCNumber(bytes.dropFirst()),
            let raw = UInt16(exactly: number)
        else { return nil }
        self.init(access, DomID(raw))
    }

    public init?(_ string: String) {
        self.init(wire: Array(string.utf8))
    }

    /// The wire form, letter plus decimal domid (no NUL).
    public var description: String { "\(access.letter)\(domid.rawValue)" }

    /// `strtol(s, &end, 0)` with `*end == 0` required: decimal, `0x`/`0X` hex or leading-0 octal.
    /// A leading `+` is accepted as strtol does; signs, spaces and overflow beyond 32 bits are not.
    static func parseCNumber(_ bytes: some Collection<UInt8>) -> UInt32? {
        var digits = Array(bytes)
        if digits.first == UInt8(ascii: "+") { digits.removeFirst() }
        guard !digits.isEmpty else { return nil }
        var radix: UInt32 = 10
        if digits.count > 2, digits[0] == UInt8(ascii: "0"), digits[1] | 0x20 == UInt8(ascii: "x") {
            radix = 16
            digits.removeFirst(2)
        } else if digits.count > 1, digits[0] == UInt8(ascii: "0") {
            radix = 8
            digits.removeFirst()
        }
        var value: UInt32 = 0
        for byte in digits {
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A")) + 10
            default: return nil
            }
            guard digit < radix else { return nil }
            let (shifted, o1) = value.multipliedReportingOverflow(by: radix)
            let (sum, o2) = shifted.addingReportingOverflow(digit)
            guard !o1, !o2 else { return nil }
            value = sum
        }
        return value
    }
}

/// A node's permission list, owner first.
///
/// Semantics (xenstore.txt, cxenstored):
/// - The first entry names the **owner**, who may always read, write and set permissions.
///   Its letter is the **default access** of every domain that has no entry of its own.
/// - Later entries grant rights to specific domains; the first entry for a domain wins.
/// - Privileged connections bypass all of this (the engine's business, not this type's).
///
/// Invariant: there is always at least the owner entry.
public struct XenstorePermissions: Hashable, Sendable, CustomStringConvertible {
    /// The owner and the default access.
    public var owner: XenstorePermission
    /// Per-domain entries after the owner.
    public var acl: [XenstorePermission]

    public init(owner: XenstorePermission, acl: [XenstorePermission] = []) {
        self.owner = owner
        self.acl = acl
    }

    /// Owner `domid` with default `access`, no further entries (`n0` is `.init(owner: .dom0)`).
    public init(owner domid: DomID, default access: XenstoreAccess = .none, acl: [XenstorePermission] = []) {
        self.init(owner: XenstorePermission(access, domid), acl: acl)
    }

    /// Builds from a list whose first entry is the owner; nil for an empty list.
    public init?(entries: [XenstorePermission]) {
        guard let first = entries.first else { return nil }
        self.init(owner: first, acl: Array(entries.dropFirst()))
    }

    /// Parses NUL-terminated permission strings (the tail of SET_PERMS, or a GET_PERMS reply).
    /// Nil if the list is empty, does not end with NUL, or holds a malformed entry.
    public init?(wire payload: [UInt8]) {
        guard let strings = try? XenstorePayload.arguments(payload) else { return nil }
        var entries: [XenstorePermission] = []
        for string in strings {
            guard let entry = XenstorePermission(wire: string) else { return nil }
            entries.append(entry)
        }
        self.init(entries: entries)
    }

    /// Every entry, owner first.
    public var entries: [XenstorePermission] { [owner] + acl }

    /// The wire form: each entry followed by NUL.
    public var wire: [UInt8] { XenstorePayload.strings(entries.map { $0.description }) }

    /// The access this list gives `domid`, ignoring privilege: full for the owner, else the
    /// first matching entry, else the owner entry's default letter.
    public func access(for domid: DomID) -> XenstoreAccess {
        if domid == owner.domid { return .both }
        return acl.first { $0.domid == domid }?.access ?? owner.access
    }

    public var description: String { entries.map { $0.description }.joined(separator: ",") }
}
