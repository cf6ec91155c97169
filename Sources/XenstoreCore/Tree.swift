//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import OrderedCollections
import XenABI
import XenstoreWire

/// One node of the store. A value type: children live in an ordered dictionary (creation
/// order is DIRECTORY order), so copying a tree is O(1) and mutating one path copies only
/// the dictionaries along that path that are shared — the Swift spelling of oxenstored's
/// immutable nodes. A transaction is therefore just a copy of the root.
struct Node: Sendable {
    var value: [UInt8]
    var perms: XenstorePermissions
    /// The store generation at which this node's value, permissions or child list last changed.
    var generation: UInt64
    var children: OrderedDictionary<String, Node> = [:]

    /// cxenstored's record size: 24-byte header, 8 bytes per permission, the value, and each
    /// child name with its NUL.
    var recordSize: Int {
        24 + 8 * (perms.acl.count + 1) + value.count + children.keys.reduce(0) { $0 + $1.utf8.count + 1 }
    }

    /// The children's names, each followed by NUL (the DIRECTORY payload).
    var listing: [UInt8] { XenstorePayload.strings(children.keys) }
}

/// A whole store: the root node plus per-owner node counts, kept together so that a
/// transaction's copy carries its own counts.
///
/// The mutating primitives do **no** permission or quota checks: callers check first, apply
/// to a scratch copy, validate, and only then keep the copy — so a failed request changes nothing.
///
/// Invariant: `ownerCounts[d]` == number of nodes (root included) whose owner is `d`.
struct Tree: Sendable {
    private(set) var root: Node
    private(set) var ownerCounts: [DomID: Int]

    /// The initial tree: `/`, `/tool`, `/tool/xenstored`, `/local`, `/local/domain`, all `n0`.
    init(generation: UInt64) {
        let n0 = XenstorePermissions(owner: .dom0)
        root = Node(value: [], perms: n0, generation: generation)
        ownerCounts = [.dom0: 1]
        for path in ["/tool/xenstored", "/local/domain"] {
            write(XenstorePath(trusted: path), value: nil, newOwner: nil, generation: generation)
        }
    }

    /// An empty tree to hold in place of one being changed elsewhere.
    static let placeholder = Tree(generation: 0)

    func nodeCount(ownedBy domid: DomID) -> Int { ownerCounts[domid, default: 0] }

    func node(at path: XenstorePath) -> Node? {
        var current = root
        for name in path.components {
            guard let child = current.children[name] else { return nil }
            current = child
        }
        return current
    }

    /// The deepest existing node on the way to `path` (`path` itself if it exists).
    func nearestExisting(_ path: XenstorePath) -> (path: XenstorePath, node: Node) {
        var current = root
        var depth = 0
        for name in path.components {
            guard let child = current.children[name] else { break }
            current = child
            depth += 1
        }
        return (path.prefix(depth), current)
    }

    /// Creates `path` and any missing ancestors, then sets its value if `value` is non-nil
    /// (nil = MKDIR: an existing node is left alone). New nodes copy the permissions of the
    /// nearest existing ancestor, with the owner replaced by `newOwner` when given.
    ///
    /// - Returns: the paths created, top-down, and the ancestor that gained a child (if any).
    @discardableResult
    mutating func write(
        _ path: XenstorePath,
        value: [UInt8]?,
        newOwner: DomID?,
        generation: UInt64
    )
        -> (created: [XenstorePath], extended: XenstorePath?)
    {
        let components = path.components
        // The ancestor's permissions, not the node: a copy of it alive during the
        // insertion below would make the insertion copy the ancestor's child list.
        let (existingPath, existingPerms) = {
            let (path, node) = nearestExisting(path)
            return (path, node.perms)
        }()
        let existingDepth = existingPath.components.count
        if existingDepth == components.count {
            if let value {
                Tree.mutate(&root, components[...]) {
                    $0.value = value
                    $0.generation = generation
                }
            }
            return ([], nil)
        }
        var perms = existingPerms
        if let newOwner { perms.owner.domid = newOwner }
        // Build the missing chain bottom-up, then hang it under the existing ancestor.
        let leaf = Node(value: value ?? [], perms: perms, generation: generation)
        let chain = Tree.buildChain(
            components[existingDepth...].dropFirst(),
            leaf: leaf,
            perms: perms,
            generation: generation
        )
        var created: [XenstorePath] = []
        var cursor = existingPath
        for name in components[existingDepth...] {
            cursor = cursor.appending(name)
            created.append(cursor)
        }
        let firstName = components[existingDepth]
        Tree.mutate(&root, components[..<existingDepth]) {
            $0.children[firstName] = chain
            $0.generation = generation
        }
        ownerCounts[perms.owner.domid, default: 0] += created.count
        return (created, existingPath)
    }

    /// Removes the subtree at `path` (which must exist and not be `/`).
    ///
    /// - Returns: every removed node with its permissions, pre-order (the subtree root first).
    @discardableResult
    mutating func remove(_ path: XenstorePath, generation: UInt64) -> [(path: XenstorePath, perms: XenstorePermissions)]
    {
        let components = path.components
        guard let name = components.last else { return [] }
        let removedNode = Tree.mutate(&root, components.dropLast()) { parent -> Node? in
            let child = parent.children.removeValue(forKey: name)
            if child != nil { parent.generation = generation }
            return child
        }
        guard let removedNode = removedNode ?? nil else { return [] }
        var removed: [(path: XenstorePath, perms: XenstorePermissions)] = []
        Tree.walk(removedNode, at: path) { removed.append(($0, $1.perms)) }
        for (_, perms) in removed {
            ownerCounts[perms.owner.domid, default: 0] -= 1
            if ownerCounts[perms.owner.domid] == 0 { ownerCounts[perms.owner.domid] = nil }
        }
        return removed
    }

    /// Replaces the permissions of the existing node at `path`.
    mutating func setPerms(_ path: XenstorePath, _ perms: XenstorePermissions, generation: UInt64) {
        let old = Tree.mutate(&root, path.components[...]) { node -> DomID in
            let old = node.perms.owner.domid
            node.perms = perms
            node.generation = generation
            return old
        }
        guard let old else { return }
        ownerCounts[old, default: 0] -= 1
        if ownerCounts[old] == 0 { ownerCounts[old] = nil }
        ownerCounts[perms.owner.domid, default: 0] += 1
    }

    /// The topmost nodes owned by `domid` (their subtrees hold all of its other nodes).
    func outermostNodes(ownedBy domid: DomID) -> [XenstorePath] {
        var result: [XenstorePath] = []
        func visit(_ node: Node, _ path: XenstorePath) {
            if node.perms.owner.domid == domid && !path.isRoot {
                result.append(path)
                return
            }
            for (name, child) in node.children { visit(child, path.appending(name)) }
        }
        visit(root, XenstorePath(trusted: "/"))
        return result
    }

    /// Every node, pre-order, with its path.
    static func walk(_ node: Node, at path: XenstorePath, _ body: (XenstorePath, Node) -> Void) {
        body(path, node)
        for (name, child) in node.children { walk(child, at: path.appending(name), body) }
    }

    private static func buildChain(
        _ names: ArraySlice<String>,
        leaf: Node,
        perms: XenstorePermissions,
        generation: UInt64
    ) -> Node {
        guard let first = names.first else { return leaf }
        var node = Node(value: [], perms: perms, generation: generation)
        node.children[first] = buildChain(names.dropFirst(), leaf: leaf, perms: perms, generation: generation)
        return node
    }

    @discardableResult
    private static func mutate<R>(
        _ node: inout Node,
        _ components: ArraySlice<String>,
        _ body: (inout Node) -> R
    )
        -> R?
    {
        guard let name = components.first else { return body(&node) }
        guard let index = node.children.index(forKey: name) else { return nil }
        return mutate(&node.children.values[index], components.dropFirst(), body)
    }
}

extension Tree {
    /// Problems with the tree's invariants (empty when healthy): owner counts that do not
    /// match a fresh count, or a node newer than the store's generation.
    func invariantViolations(generation: UInt64) -> [String] {
        var counts: [DomID: Int] = [:]
        var problems: [String] = []
        Tree.walk(root, at: XenstorePath(trusted: "/")) { path, node in
            counts[node.perms.owner.domid, default: 0] += 1
            if node.generation > generation {
                problems.append("\(path): generation \(node.generation) > \(generation)")
            }
        }
        if counts != ownerCounts { problems.append("owner counts \(ownerCounts) != \(counts)") }
        return problems
    }
}

extension Tree {
    /// Applies a transaction's log: at commit onto the store, and when a transaction
    /// catches up with a store that changed under it.
    mutating func replay(_ log: [TreeOperation], generation: UInt64) {
        for operation in log {
            switch operation {
            case .write(let path, let value, let newOwner):
                write(path, value: value, newOwner: newOwner, generation: generation)
            case .remove(let path):
                remove(path, generation: generation)
            case .setPerms(let path, let perms):
                setPerms(path, perms, generation: generation)
            }
        }
    }
}
