//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// A xenstore access letter (reference §4.7): `n` none, `r` read, `w` write, `b` both.
public enum XenstoreAccess: String, Equatable, Hashable, Sendable, Codable, CaseIterable {
    case none = "n"
    case read = "r"
    case write = "w"
    case both = "b"
}

/// One permission entry: an access letter for a domain, written `r5`.
public struct XenstorePermission: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var access: XenstoreAccess
    public var domain: DomID

    public init(_ access: XenstoreAccess, _ domain: DomID) {
        self.access = access
        self.domain = domain
    }

    /// The wire text: the letter followed by the decimal domid.
    public var description: String { "\(access.rawValue)\(domain.rawValue)" }

    /// Parses `n0`, `r5`… (decimal domid only; nil for anything else).
    public init?(_ text: String) {
        guard let letter = text.unicodeScalars.first, let access = XenstoreAccess(rawValue: String(letter)),
            let value = UInt16(String(text.unicodeScalars.dropFirst()))
        else { return nil }
        self.init(access, DomID(value))
    }
}

/// A node's permission list (reference §4.7). The first entry names the owner,
/// whose letter is also the default for every domain without its own entry;
/// later entries grant specific domains. JSON form: `["n0", "r5"]`.
public struct XenstorePermissions: Equatable, Hashable, Sendable, Codable, CustomStringConvertible {
    /// Owner first, then the ACL; never empty.
    public private(set) var entries: [XenstorePermission]

    /// - Parameters:
    ///   - owner: the owning domain; it always has full access.
    ///   - defaultAccess: the owner entry's letter, applied to unlisted domains.
    ///   - acl: entries for specific domains, first match wins.
    public init(owner: DomID, defaultAccess: XenstoreAccess = .none, acl: [XenstorePermission] = []) {
        entries = [XenstorePermission(defaultAccess, owner)] + acl
    }

    public var owner: DomID { entries[0].domain }
    public var defaultAccess: XenstoreAccess { entries[0].access }
    public var acl: ArraySlice<XenstorePermission> { entries.dropFirst() }

    /// Space-separated wire texts, as `xenstore-ls -p` shows them: `n0 r5`.
    public var description: String { entries.map(\.description).joined(separator: " ") }

    public init(from decoder: any Decoder) throws {
        let texts = try decoder.singleValueContainer().decode([String].self)
        let parsed = texts.compactMap(XenstorePermission.init)
        guard !parsed.isEmpty, parsed.count == texts.count else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "invalid permission list \(texts)")
            )
        }
        entries = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(entries.map(\.description))
    }
}
