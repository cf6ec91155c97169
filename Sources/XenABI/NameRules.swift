//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// What a domain or channel name may be. Names come from configuration files and
/// end up in file names (`guest-<name>.log`), xenstore values, terminal output
/// and the guest's `xen-channel/<name>` links, so they must not be able to walk
/// a path, move a terminal's cursor or reverse the text around them.
///
/// xl has no explicit bound: its names meet the file system's (255 bytes for a
/// log file name) and xenstore's (a 4096-byte payload) at some later step. Conch
/// checks one bound up front, with a message.
public enum NameRules {
    /// Longest name, in UTF-8 bytes.
    public static let maximumLength = 128

    /// Why `name` is not acceptable as a `what` ("domain name", "channel name"),
    /// or nil when it is.
    public static func problem(with name: String, what: String) -> String? {
        if name.isEmpty { return "\(what) is empty" }
        if name.utf8.count > maximumLength {
            return "\(what) is \(name.utf8.count) bytes long; the limit is \(maximumLength)"
        }
        if name == "." || name == ".." || name.contains("/") {
            return "\(what) '\(name)' may not contain '/' or be . or .."
        }
        if let bad = name.unicodeScalars.first(where: isForbidden) {
            let code = String(bad.value, radix: 16, uppercase: true)
            return "\(what) contains U+\(String(repeating: "0", count: max(0, 4 - code.count)))\(code) "
                + "(control characters and text-direction overrides are not allowed)"
        }
        return nil
    }

    /// C0 and C1 controls, DEL, and the Unicode bidirectional formatting characters.
    static func isForbidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: true
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}
