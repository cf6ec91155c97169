//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// A validated, absolute xenstore path, or a special `@` path.
///
/// Rules (xenstore.txt and cxenstored 4.17 `is_valid_nodename`); every violation is EINVAL:
/// - Characters: ASCII letters, digits and `-/_@` only. Not empty.
/// - Absolute paths start with `/`; no trailing `/` (except `/` itself) and no `//`.
/// - A path starting with neither `/` nor `@` is **relative**: it is prefixed with the
///   connection's domain path (`/local/domain/<domid>` + `/`).
/// - `@` paths (``isSpecial``) are never made relative, may be at most 2048 characters, and
///   are accepted only where the caller allows them (watches, permissions).
/// - Length, for every connection, privileged or not (cxenstored's `is_valid_nodename`): the
///   part after a leading `/local/domain/<id>/` may be at most the path quota (2048,
///   `XENSTORE_REL_PATH_MAX`); elsewhere the whole path may. Longer is EINVAL for every
///   operation, reads included. The whole path never exceeds `XENSTORE_ABS_PATH_MAX` (3072).
public struct XenstorePath: Hashable, Sendable, CustomStringConvertible {
    /// The absolute (or `@`) form.
    public let rawValue: String
    /// The request gave it relative to the connection's domain path.
    public let wasRelative: Bool

    public var isSpecial: Bool { rawValue.utf8.first == UInt8(ascii: "@") }
    public var isRoot: Bool { rawValue == "/" }
    public var description: String { rawValue }

    /// The names from the root down; empty for `/`. Split once, when the path is
    /// made: every tree walk uses them, several times per request.
    let components: [String]

    /// The parent path; nil for `/` and special paths.
    var parent: XenstorePath? {
        guard !isRoot, !isSpecial, let slash = rawValue.utf8.lastIndex(of: UInt8(ascii: "/")) else { return nil }
        let parent = slash == rawValue.startIndex ? "/" : String(rawValue[..<slash])
        return XenstorePath(rawValue: parent, components: Array(components.dropLast()), wasRelative: false)
    }

    /// A path known to be valid (built by the engine itself).
    init(trusted: String, wasRelative: Bool = false) {
        self.init(
            rawValue: trusted,
            components: Self.names(trusted),
            wasRelative: wasRelative
        )
    }

    /// The names between slashes, empty ones skipped.
    private static func names(_ path: String) -> [String] {
        var names: [String] = []
        var path = path
        path.withUTF8 { bytes in
            var start = 0
            for index in 0...bytes.count where index == bytes.count || bytes[index] == UInt8(ascii: "/") {
                if index > start { names.append(String(decoding: bytes[start..<index], as: UTF8.self)) }
                start = index + 1
            }
        }
        return names
    }

    private init(rawValue: String, components: [String], wasRelative: Bool) {
        self.rawValue = rawValue
        self.components = components
        self.wasRelative = wasRelative
    }

    /// `self` followed by `/name`.
    func appending(_ name: some StringProtocol) -> XenstorePath {
        let name = String(name)
        return XenstorePath(
            rawValue: isRoot ? "/" + name : rawValue + "/" + name,
            components: components + [name],
            wasRelative: false
        )
    }

    /// The ancestor made of the first `depth` components (`/` for 0).
    func prefix(_ depth: Int) -> XenstorePath {
        guard depth < components.count else { return self }
        let names = Array(components[..<depth])
        return XenstorePath(rawValue: "/" + names.joined(separator: "/"), components: names, wasRelative: false)
    }

    // Identity is the text: the components follow from it.
    public static func == (a: XenstorePath, b: XenstorePath) -> Bool {
        a.rawValue == b.rawValue && a.wasRelative == b.wasRelative
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(rawValue)
        hasher.combine(wasRelative)
    }

    /// Whether `self` equals `other` or lies beneath it.
    func isDescendant(ofOrEqualTo other: XenstorePath) -> Bool {
        if other.isRoot { return !isSpecial }
        guard rawValue.hasPrefix(other.rawValue) else { return false }
        let rest = rawValue.utf8.dropFirst(other.rawValue.utf8.count)
        return rest.isEmpty || rest.first == UInt8(ascii: "/")
    }

    /// Validates and resolves a path taken from a request.
    ///
    /// - Parameters:
    ///   - bytes: the path as sent, without its NUL.
    ///   - base: the connection's domain path, used for relative paths.
    ///   - allowSpecial: accept `@` paths.
    ///   - pathLimit: the path quota (``Quotas/effectivePathLength``).
    public static func resolve(
        _ bytes: [UInt8],
        relativeTo base: String,
        allowSpecial: Bool,
        pathLimit: Int
    ) throws(XenstoreError) -> XenstorePath {
        guard let first = bytes.first, bytes.allSatisfy(isAllowed) else { throw .EINVAL }
        if first == UInt8(ascii: "@") {
            guard allowSpecial, bytes.count <= XenstoreInterface.relativePathMax, isWellFormed(bytes)
            else { throw .EINVAL }
            return XenstorePath(trusted: String(decoding: bytes, as: UTF8.self))
        }
        let relative = first != UInt8(ascii: "/")
        let full = relative ? Array(base.utf8) + [UInt8(ascii: "/")] + bytes : bytes
        guard isWellFormed(full) else { throw .EINVAL }
        guard full.count - localPrefixLength(full) <= pathLimit, full.count <= XenstoreInterface.absolutePathMax
        else { throw .EINVAL }
        return XenstorePath(trusted: String(decoding: full, as: UTF8.self), wasRelative: relative)
    }

    /// The domain path of `domid`: `/local/domain/<domid>`.
    public static func domainPath(_ domid: DomID) -> String { "/local/domain/\(domid.rawValue)" }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "/"), UInt8(ascii: "_"),
            UInt8(ascii: "@"):
            true
        default: false
        }
    }

    /// No `//`, no trailing `/` unless the path is exactly `/`.
    private static func isWellFormed(_ bytes: [UInt8]) -> Bool {
        let slash = UInt8(ascii: "/")
        if bytes == [slash] { return true }
        if bytes.last == slash { return false }
        for index in bytes.indices.dropFirst() where bytes[index] == slash && bytes[index - 1] == slash {
            return false
        }
        return true
    }

    /// Length of a leading `/local/domain/<up to 5 digits>/`, else 0 (cxenstored's `%5u/%n`).
    private static func localPrefixLength(_ bytes: [UInt8]) -> Int {
        let prefix = Array("/local/domain/".utf8)
        guard bytes.starts(with: prefix) else { return 0 }
        var index = prefix.count
        while index < bytes.count, index - prefix.count < 5,
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index])
        {
            index += 1
        }
        guard index > prefix.count, index < bytes.count, bytes[index] == UInt8(ascii: "/") else { return 0 }
        return index + 1
    }
}
