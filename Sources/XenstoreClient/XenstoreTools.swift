//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenstoreWire

/// A failed `xenstore-*`-style operation, worded as Xen's tools word it
/// ("could not remove path /a: EACCES").
public struct XenstoreToolFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Error {
    /// "what: ENOENT": the tools' message with the error's name appended.
    public func toolFailure(_ what: String) -> XenstoreToolFailure { XenstoreToolFailure("\(what): \(self)") }
}

/// How `xenstore-ls` lays a tree out.
public struct XenstoreListingLayout: Sendable {
    /// Columns a line may take; names and values are cut to fit.
    public var maxWidth: Int
    /// The column permissions are padded to (with `-p`).
    public var desiredWidth: Int
    /// `-f`: full paths instead of indented names.
    public var fullPaths: Bool
    /// `-p`: each node's permissions after its value.
    public var showPermissions: Bool

    /// `terminalWidth` is the screen's (nil when not a terminal: 80 columns).
    public init(terminalWidth: Int?, fullPaths: Bool, showPermissions: Bool) {
        maxWidth = fullPaths ? Int(Int32.max / 2) : (terminalWidth.map { $0 - 2 } ?? 80)
        desiredWidth = fullPaths ? 0 : 60
        self.fullPaths = fullPaths
        self.showPermissions = showPermissions
    }
}

extension XenstoreClient {
    /// The subtree under `path` as `xenstore-ls` prints it: indented by depth, each
    /// name cut to fit, ` = "value"` escaped and cut with `\...` past the width,
    /// permissions after dot padding. Appends line by line to `output`, so that
    /// what was listed before a failure is still there.
    public func list(_ path: String, layout: XenstoreListingLayout, into output: inout String) async throws {
        try await list(path, depth: 0, layout: layout, into: &output)
    }

    private func list(
        _ path: String,
        depth: Int,
        layout: XenstoreListingLayout,
        into output: inout String
    )
        async throws
    {
        let children: [String]
        do {
            children = try await directory(path)
        } catch {
            throw error.toolFailure("xs_directory (\(path))")
        }
        let tag = " = \"...\"".count
        for child in children {
            let childPath = path.hasSuffix("/") ? path + child : path + "/" + child
            var line = ""
            if layout.fullPaths {
                line += childPath
            } else {
                line += String(repeating: " ", count: depth)
                line += String(child.prefix(max(0, layout.maxWidth - tag - line.count)))
            }
            var width = layout.fullPaths ? 0 : line.count
            if let value = try? await read(childPath) {
                let shown = XenstoreValueEscaping.escape(value)
                if layout.maxWidth < width + value.count + tag {
                    line += " = \"\(shown.prefix(max(0, layout.maxWidth - tag - width)))\\...\""
                } else {
                    line += " = \"\(shown)\""
                    width += shown.count + 5
                    if layout.showPermissions {
                        line += " "
                        width += 1
                        while width < min(layout.desiredWidth, layout.maxWidth) {
                            line += width & 1 == 1 ? "." : " "
                            width += 1
                        }
                    }
                }
            } else {
                line += ":"
            }
            if layout.showPermissions, let permissions = try? await permissions(childPath) {
                line += "  (\(permissions))"
            }
            output += line + "\n"
            try await list(childPath, depth: depth + 1, layout: layout, into: &output)
        }
    }

    /// Removes `path` and its subtree; with `tidy` (`xenstore-rm -t`), then each
    /// parent left with neither value nor children.
    public func remove(_ path: String, tidy: Bool, transaction: XenstoreTransaction) async throws {
        var path = path
        while true {
            do {
                try await remove(path, transaction: transaction)
            } catch {
                throw error.toolFailure("could not remove path \(path)")
            }
            guard tidy, let slash = path.lastIndex(of: "/") else { return }
            path = String(path[..<slash])
            guard !path.isEmpty,
                let value = try? await read(path, transaction: transaction), value.isEmpty,
                let children = try? await directory(path, transaction: transaction), children.isEmpty
            else { return }
        }
    }

    /// Sets `permissions` on `path`, and with `upto` on every parent to the root,
    /// with `recurse` on every node below (`xenstore-chmod -u`, `-r`).
    public func setPermissions(
        _ path: String,
        _ permissions: XenstorePermissions,
        transaction: XenstoreTransaction,
        upto: Bool,
        recurse: Bool
    ) async throws {
        guard !path.isEmpty else { return }
        do {
            try await setPermissions(path, permissions, transaction: transaction)
        } catch {
            throw error.toolFailure("Error occurred setting permissions on '\(path)'")
        }
        if upto, let slash = path.lastIndex(of: "/") {
            try await setPermissions(
                String(path[..<slash]),
                permissions,
                transaction: transaction,
                upto: true,
                recurse: false
            )
        }
        if recurse {
            for child in (try? await directory(path, transaction: transaction)) ?? [] {
                try await setPermissions(
                    path + "/" + child,
                    permissions,
                    transaction: transaction,
                    upto: false,
                    recurse: true
                )
            }
        }
    }
}
