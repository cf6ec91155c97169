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
        guard depth > 0 else { return XenstorePath(rawValue: "/", components: [], wasRelative: false) }
        // The text up to the slash that ends the depth-th name.
        var slashes = 0
        let end = rawValue.utf8.indices.first { index in
            guard rawValue.utf8[index] == UInt8(ascii: "/") else { return false }
            slashes += 1
            return slashes == depth + 1
        }
        return XenstorePath(
            rawValue: String(rawValue[..<(end ?? rawValue.endIndex)]),
            components: Array(components[..<depth]),
            wasRelative: false
        )
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
    /// One pass over the bytes checks the characters and the slashes and splits the
    /// names: this runs for every request, so it builds nothing it does not return.
    /// A relative path is checked and split on its own and put after `base`'s names.
    ///
    /// - Parameters:
    ///   - bytes: the path as sent, without its NUL.
    ///   - base: the connection's domain path, used for relative paths.
    ///   - allowSpecial: accept `@` paths.
    ///   - pathLimit: the path quota (``Quotas/effectivePathLength``).
    public static func resolve(
        _ bytes: [UInt8],
        relativeTo base: XenstorePath,
        allowSpecial: Bool,
        pathLimit: Int
    ) throws(XenstoreError) -> XenstorePath {
        guard let first = bytes.first else { throw .EINVAL }
        if first == UInt8(ascii: "@") {
            guard allowSpecial, bytes.count <= XenstoreInterface.relativePathMax, bytes.allSatisfy(isAllowed),
                isWellFormed(bytes)
            else { throw .EINVAL }
            return XenstorePath(trusted: String(decoding: bytes, as: UTF8.self))
        }
        let relative = first != UInt8(ascii: "/")
        var components: [String] = []
        let baseLength = relative ? base.rawValue.utf8.count + 1 : 0
        let length = baseLength + bytes.count
        if relative {
            components.reserveCapacity(base.components.count + 8)
            components += base.components
        } else {
            components.reserveCapacity(8)
        }
        guard length <= XenstoreInterface.absolutePathMax,
            appendNames(of: bytes, from: relative ? 0 : 1, to: &components)
        else { throw .EINVAL }
        guard length - localPrefixLength(components) <= pathLimit else { throw .EINVAL }
        // The text written once into the string's own storage (checked above: ASCII).
        let rawValue = String(unsafeUninitializedCapacity: length) { text in
            // SAFETY: `text` has room for `length` bytes: the base's, a slash and `bytes`;
            // only that many are written and their count is returned.
            var written = 0
            if relative {
                written = text.initialize(fromContentsOf: base.rawValue.utf8)
                text[written] = UInt8(ascii: "/")
                written += 1
            }
            written += UnsafeMutableBufferPointer(rebasing: text[written...]).initialize(fromContentsOf: bytes)
            return written
        }
        return XenstorePath(rawValue: rawValue, components: components, wasRelative: relative)
    }

    /// Appends the names in `bytes` from index `first` on (after an absolute path's
    /// leading `/`, or from the start of a relative one); false if they are malformed:
    /// a character outside the allowed set, an empty name (`//`), or a trailing `/`
    /// on anything but `/`.
    private static func appendNames(of bytes: [UInt8], from first: Int, to names: inout [String]) -> Bool {
        let slash = UInt8(ascii: "/")
        // SAFETY: the buffer is used only inside the closure, indexed within its count.
        return bytes.withUnsafeBufferPointer { bytes -> Bool in
            var start = first
            for index in first..<bytes.count {
                let byte = bytes[index]
                guard isAllowed(byte) else { return false }
                guard byte == slash else { continue }
                guard index > start else { return false }
                names.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self))
                start = index + 1
            }
            guard bytes.count > start else { return bytes.count == 1 && first == 1 }
            names.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[start...]), as: UTF8.self))
            return true
        }
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

    /// Length of a leading `/local/domain/<up to 5 digits>/` followed by more, else 0
    /// (cxenstored's `%5u/%n`), from the path's names.
    private static func localPrefixLength(_ names: [String]) -> Int {
        guard names.count > 3, names[0] == "local", names[1] == "domain" else { return 0 }
        let domid = names[2].utf8
        guard (1...5).contains(domid.count), domid.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else { return 0 }
        return "/local/domain/".utf8.count + domid.count + 1
    }
}
