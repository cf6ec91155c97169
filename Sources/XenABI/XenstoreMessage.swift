//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// The 16-byte header of every xenstore message, `struct xsd_sockmsg` in
/// `xen/include/public/io/xs_wire.h`: four native-endian (little-endian on every
/// platform Conch runs on) `uint32_t` fields, followed by `len` payload bytes.
public enum XenstoreHeader {
    public static let size = 16
    public static let typeOffset = 0
    public static let reqIDOffset = 4
    public static let txIDOffset = 8
    public static let lenOffset = 12
}

/// Xenstore message types, `enum xsd_sockmsg_type` in `xs_wire.h`.
///
/// 0–22 exist in Xen 4.17 (`XS_TYPE_COUNT` = 23); 23–26 were added later
/// (`XS_TYPE_COUNT` = 27 in master). 20 (`XS_RESTRICT`) was removed and is invalid.
@frozen
public struct XenstoreMessageType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `XS_CONTROL` (`XS_DEBUG` is an alias).
    public static let control = Self(rawValue: 0)
    public static let directory = Self(rawValue: 1)
    public static let read = Self(rawValue: 2)
    public static let getPerms = Self(rawValue: 3)
    public static let watch = Self(rawValue: 4)
    public static let unwatch = Self(rawValue: 5)
    public static let transactionStart = Self(rawValue: 6)
    public static let transactionEnd = Self(rawValue: 7)
    public static let introduce = Self(rawValue: 8)
    public static let release = Self(rawValue: 9)
    public static let getDomainPath = Self(rawValue: 10)
    public static let write = Self(rawValue: 11)
    public static let mkdir = Self(rawValue: 12)
    public static let rm = Self(rawValue: 13)
    public static let setPerms = Self(rawValue: 14)
    /// Server → client only.
    public static let watchEvent = Self(rawValue: 15)
    /// Server → client only.
    public static let error = Self(rawValue: 16)
    public static let isDomainIntroduced = Self(rawValue: 17)
    public static let resume = Self(rawValue: 18)
    public static let setTarget = Self(rawValue: 19)
    /// `XS_RESTRICT`: removed from Xen; the value is invalid.
    public static let restrict = Self(rawValue: 20)
    public static let resetWatches = Self(rawValue: 21)
    public static let directoryPart = Self(rawValue: 22)
    public static let getFeature = Self(rawValue: 23)
    public static let setFeature = Self(rawValue: 24)
    public static let getQuota = Self(rawValue: 25)
    public static let setQuota = Self(rawValue: 26)
    /// `XS_INVALID` (0xffff).
    public static let invalid = Self(rawValue: 0xffff)

    /// `XS_TYPE_COUNT` in Xen 4.17 headers.
    public static let legacyTypeCount: UInt32 = 23
    /// `XS_TYPE_COUNT` in master headers.
    public static let typeCount: UInt32 = 27

    /// Every type 0–26 with the name `xs_wire.h` gives it (without the `XS_` prefix).
    public static let allNamed: [(XenstoreMessageType, String)] = [
        (.control, "CONTROL"), (.directory, "DIRECTORY"), (.read, "READ"), (.getPerms, "GET_PERMS"),
        (.watch, "WATCH"), (.unwatch, "UNWATCH"), (.transactionStart, "TRANSACTION_START"),
        (.transactionEnd, "TRANSACTION_END"), (.introduce, "INTRODUCE"), (.release, "RELEASE"),
        (.getDomainPath, "GET_DOMAIN_PATH"), (.write, "WRITE"), (.mkdir, "MKDIR"), (.rm, "RM"),
        (.setPerms, "SET_PERMS"), (.watchEvent, "WATCH_EVENT"), (.error, "ERROR"),
        (.isDomainIntroduced, "IS_DOMAIN_INTRODUCED"), (.resume, "RESUME"), (.setTarget, "SET_TARGET"),
        (.restrict, "RESTRICT"), (.resetWatches, "RESET_WATCHES"), (.directoryPart, "DIRECTORY_PART"),
        (.getFeature, "GET_FEATURE"), (.setFeature, "SET_FEATURE"), (.getQuota, "GET_QUOTA"),
        (.setQuota, "SET_QUOTA"),
    ]

    public var description: String {
        if self == .invalid { return "INVALID" }
        if rawValue < XenstoreMessageType.typeCount { return XenstoreMessageType.allNamed[Int(rawValue)].1 }
        return "UNKNOWN(\(rawValue))"
    }
}

/// The xenstore error names, `xsd_errors[]` in `xs_wire.h`.
///
/// An error reply's payload is the name followed by one NUL (`"ENOENT\0"`). The table
/// order is fixed; new names may only be appended. A server that has to report an
/// errno not in the table sends `EINVAL`, and a client that receives an unknown name
/// maps it to `EINVAL`.
public enum XenstoreError: Int, CaseIterable, Error, Hashable, Sendable, CustomStringConvertible {
    case EINVAL = 0
    case EACCES
    case EEXIST
    case EISDIR
    case ENOENT
    case ENOMEM
    case ENOSPC
    case EIO
    case ENOTEMPTY
    case ENOSYS
    case EROFS
    case EBUSY
    case EAGAIN
    case EISCONN
    case E2BIG
    case EPERM

    /// The name as it travels on the wire (without the NUL).
    public var name: String { XenstoreError.names[rawValue] }

    /// The Linux errno value paired with the name in `xsd_errors[]` (never sent on the wire).
    public var errno: Int32 { XenstoreError.linuxErrnos[rawValue] }

    /// Looks a wire name up; unknown names map to `EINVAL`, as libxenstore does.
    public init(wireName: some StringProtocol) {
        self = XenstoreError.names.firstIndex { $0 == wireName }.flatMap(XenstoreError.init(rawValue:)) ?? .EINVAL
    }

    /// Maps a Linux errno to its table entry; errnos outside the table map to `EINVAL`.
    public init(errno: Int32) {
        self = XenstoreError.linuxErrnos.firstIndex(of: errno).flatMap(XenstoreError.init(rawValue:)) ?? .EINVAL
    }

    public var description: String { name }

    static let names = [
        "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
        "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
    ]
    static let linuxErrnos: [Int32] = [22, 13, 17, 21, 2, 12, 28, 5, 39, 38, 30, 16, 11, 106, 7, 1]
}
