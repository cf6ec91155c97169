//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// Splitting request payloads into arguments and building reply payloads.
///
/// Request payloads (`|` stands for NUL):
///
/// ```
///  READ, DIRECTORY, GET_PERMS, MKDIR, RM        path|
///  RELEASE, RESUME, GET_DOMAIN_PATH,            domid|
///    IS_DOMAIN_INTRODUCED
///  TRANSACTION_END                              T|  or  F|
///  WRITE                                        path|value         (value: raw bytes, may hold NULs)
///  SET_PERMS                                    path|perm|perm|...
///  WATCH, UNWATCH                               path|token|
///  INTRODUCE                                    domid|frame|port|
///  SET_TARGET                                   domid|target|
///  DIRECTORY_PART                               path|offset|
///  TRANSACTION_START, RESET_WATCHES             (ignored; libxenstore sends | )
///  GET_FEATURE / SET_FEATURE                    [domid|]  /  domid|value|
///  GET_QUOTA / SET_QUOTA                        [[domid|]quota|]  /  [domid|]quota|value|
///  CONTROL                                      command|[param|]...
/// ```
///
/// Reply payloads: `OK|` for plain success; READ the raw value with no NUL; DIRECTORY each
/// name followed by NUL; GET_PERMS each permission string followed by NUL; TRANSACTION_START
/// the decimal id plus NUL; errors the name plus NUL; WATCH_EVENT `path|token|`.
///
/// Strictness (cxenstored's rules): a single-argument request must contain exactly one NUL,
/// at its very end; a list of strings must end with a NUL. Anything else is EINVAL.
public enum XenstorePayload {
    /// `OK` followed by NUL.
    public static let ok: [UInt8] = Array("OK\0".utf8)

    /// The error's wire name followed by NUL.
    public static func error(_ error: XenstoreError) -> [UInt8] {
        Array(error.name.utf8) + [0]
    }

    /// `path NUL token NUL`. Inlinable, as the ones below: a generic function called
    /// from another module runs unspecialised unless its body is visible there.
    @inlinable
    public static func watchEvent(path: some StringProtocol, token: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(path.utf8.count + token.count + 2)
        bytes.append(contentsOf: path.utf8)
        bytes.append(0)
        bytes += token
        bytes.append(0)
        return bytes
    }

    /// Each string followed by NUL (DIRECTORY names, GET_PERMS entries, argument lists).
    @inlinable
    public static func strings(_ strings: some Sequence<some StringProtocol>) -> [UInt8] {
        var bytes: [UInt8] = []
        for string in strings {
            bytes.append(contentsOf: string.utf8)
            bytes.append(0)
        }
        return bytes
    }

    /// One string followed by NUL (GET_DOMAIN_PATH, TRANSACTION_START, decimal answers).
    @inlinable
    public static func string(_ string: some StringProtocol) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(string.utf8.count + 1)
        bytes.append(contentsOf: string.utf8)
        bytes.append(0)
        return bytes
    }

    /// The single argument of a one-argument request: the payload minus its final NUL.
    ///
    /// - Throws: EINVAL unless the payload holds exactly one NUL and it is the last byte.
    public static func singleArgument(_ payload: [UInt8]) throws(XenstoreError) -> [UInt8] {
        guard let nul = payload.firstIndex(of: 0), nul == payload.count - 1 else { throw .EINVAL }
        return Array(payload[..<nul])
    }

    /// The NUL-terminated strings making up `payload`. An empty payload is an empty list.
    ///
    /// - Throws: EINVAL if the payload does not end with NUL.
    public static func arguments(_ payload: [UInt8]) throws(XenstoreError) -> [[UInt8]] {
        if payload.isEmpty { return [] }
        guard payload.last == 0 else { throw .EINVAL }
        return payload.dropLast().split(separator: 0, omittingEmptySubsequences: false).map { Array($0) }
    }

    /// Exactly `count` NUL-terminated strings.
    ///
    /// - Throws: EINVAL if the payload does not end with NUL or holds a different number of strings.
    public static func arguments(_ payload: [UInt8], count: Int) throws(XenstoreError) -> [[UInt8]] {
        let list = try arguments(payload)
        guard list.count == count else { throw .EINVAL }
        return list
    }

    /// Splits at the first NUL: WRITE's `path NUL value` and SET_PERMS' `path NUL perms...`.
    ///
    /// - Throws: EINVAL if there is no NUL.
    public static func splitFirst(_ payload: [UInt8]) throws(XenstoreError) -> (first: [UInt8], rest: [UInt8]) {
        guard let nul = payload.firstIndex(of: 0) else { throw .EINVAL }
        return (Array(payload[..<nul]), Array(payload[(nul + 1)...]))
    }

    /// Parses an unsigned decimal number made of ASCII digits only (no sign, no spaces).
    /// Returns nil on anything else or on overflow of `T`.
    public static func decimal<T: FixedWidthInteger & UnsignedInteger>(
        _ bytes: some Collection<UInt8>,
        as: T.Type = T.self
    )
        -> T?
    {
        guard !bytes.isEmpty else { return nil }
        var value: T = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(T(byte - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value
    }

    /// Parses a domid as cxenstored's callers do, but strictly: unsigned decimal that fits
    /// in 16 bits. (cxenstored uses `atoi`, which turns garbage into 0; we reject it.)
    public static func domid(_ bytes: some Collection<UInt8>) -> DomID? {
        decimal(bytes, as: UInt16.self).map(DomID.init(rawValue:))
    }
}
