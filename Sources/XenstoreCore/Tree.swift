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
///
/// The fields sit in one reference-counted box, copied on write: every request walks
/// the tree, and a step of a walk then copies one reference, not five (the value, the
/// permissions and the three buffers of the child dictionary).
struct Node: @unchecked Sendable {
    // @unchecked: `Storage` is mutated only through `unique()`, i.e. when no other
    // Node shares it, so no two threads ever see it change.
    private final class Storage {
        // Not checked for exclusivity at run time: only this file's pure code opens
        // accesses to these (no callback runs while one is open), a box is changed
        // only while one Node holds it, and the check would cost more than the rest
        // of a step of a walk.
        @exclusivity(unchecked) var value: [UInt8]
        @exclusivity(unchecked) var perms: XenstorePermissions
        @exclusivity(unchecked) var generation: UInt64
        @exclusivity(unchecked) var children: OrderedDictionary<String, Node>

        init(value: [UInt8], perms: XenstorePermissions, generation: UInt64, children: OrderedDictionary<String, Node>)
        {
            self.value = value
            self.perms = perms
            self.generation = generation
            self.children = children
        }
    }

    private var storage: Storage

    init(value: [UInt8], perms: XenstorePermissions, generation: UInt64) {
        storage = Storage(value: value, perms: perms, generation: generation, children: [:])
    }

    /// The box, copied first if another Node shares it.
    private mutating func unique() -> Storage {
        if !isKnownUniquelyReferenced(&storage) {
            storage = Storage(
                value: storage.value,
                perms: storage.perms,
                generation: storage.generation,
                children: storage.children
            )
        }
        return storage
    }

    var value: [UInt8] {
        get { storage.value }
        set { unique().value = newValue }
    }

    var perms: XenstorePermissions {
        get { storage.perms }
        set { unique().perms = newValue }
    }

    /// The store generation at which this node's value, permissions or child list last changed.
    var generation: UInt64 {
        get { storage.generation }
        set { unique().generation = newValue }
    }

    var children: OrderedDictionary<String, Node> {
        _read { yield storage.children }
        _modify { yield &unique().children }
    }

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

    /// The deepest existing node on the way to `path` (`path` itself if it exists),
    /// with what a request needs to know before changing `path`, in one walk: how
    /// many of its names exist (`depth`) and that node's parent's permissions (nil
    /// for the root).
    func deepest(_ path: XenstorePath) -> (depth: Int, node: Node, parentPerms: XenstorePermissions?) {
        var current = root
        var parentPerms: XenstorePermissions?
        var depth = 0
        for name in path.components {
            guard let child = current.children[name] else { break }
            parentPerms = current.perms
            current = child
            depth += 1
        }
        return (depth, current, parentPerms)
    }

    /// Creates `path` and any missing ancestors, then sets its value if `value` is non-nil
    /// (nil = MKDIR: an existing node is left alone). New nodes copy the permissions of the
    /// nearest existing ancestor, with the owner replaced by `newOwner` when given.
    ///
    /// One walk down, changing nodes in place: no copy of a node is alive while its
    /// child list changes, so adding a child never copies its siblings.
    ///
    /// - Returns: how many nodes were created.
    @discardableResult
    mutating func write(
        _ path: XenstorePath,
        value: [UInt8]?,
        newOwner: DomID?,
        generation: UInt64
    ) -> Int {
        let (created, owner) = Tree.write(
            into: &root,
            path.components[...],
            value: value,
            newOwner: newOwner,
            generation: generation
        )
        if created > 0 { ownerCounts[owner, default: 0] += created }
        return created
    }

    /// ``write(_:value:newOwner:generation:)`` below `node`: returns the nodes created
    /// and their owner.
    private static func write(
        into node: inout Node,
        _ names: ArraySlice<String>,
        value: [UInt8]?,
        newOwner: DomID?,
        generation: UInt64
    ) -> (created: Int, owner: DomID) {
        guard let name = names.first else {
            if let value {
                node.value = value
                node.generation = generation
            }
            return (0, node.perms.owner.domid)
        }
        if let index = node.children.index(forKey: name) {
            return write(
                into: &node.children.values[index],
                names.dropFirst(),
                value: value,
                newOwner: newOwner,
                generation: generation
            )
        }
        var perms = node.perms
        if let newOwner { perms.owner.domid = newOwner }
        // Build the missing chain bottom-up, then hang it here.
        let leaf = Node(value: value ?? [], perms: perms, generation: generation)
        node.children[name] = buildChain(names.dropFirst(), leaf: leaf, perms: perms, generation: generation)
        node.generation = generation
        return (names.count, perms.owner.domid)
    }

    /// One node a removal took away, with its permissions and its parent's at the time.
    struct RemovedNode {
        let path: XenstorePath
        let perms: XenstorePermissions
        let parentPerms: XenstorePermissions
    }

    /// Removes the subtree at `path` (which must exist and not be `/`).
    ///
    /// - Parameter listing: whether to return the removed nodes. Their paths are built
    ///   one by one, so a caller that neither fires watches nor logs a transaction
    ///   passes false and gets `[]`.
    /// - Returns: every removed node, pre-order (the subtree root first).
    @discardableResult
    mutating func remove(_ path: XenstorePath, generation: UInt64, listing: Bool = true) -> [RemovedNode] {
        let components = path.components
        guard let name = components.last else { return [] }
        let detached = Tree.mutate(&root, components.dropLast()) { parent -> (Node, XenstorePermissions)? in
            guard let child = parent.children.removeValue(forKey: name) else { return nil }
            parent.generation = generation
            return (child, parent.perms)
        }
        guard let (subtree, parentPerms) = detached ?? nil else { return [] }
        // Removed nodes per owner, counted apart: a subtree mostly has one owner, so
        // the dictionary is changed once, not once per node.
        var owners: [(domid: DomID, count: Int)] = []
        func countRemoval(of owner: DomID) {
            if let index = owners.firstIndex(where: { $0.domid == owner }) {
                owners[index].count += 1
            } else {
                owners.append((owner, 1))
            }
        }
        var removed: [RemovedNode] = []
        func visit(_ node: Node, _ path: XenstorePath, _ parentPerms: XenstorePermissions) {
            countRemoval(of: node.perms.owner.domid)
            removed.append(RemovedNode(path: path, perms: node.perms, parentPerms: parentPerms))
            for (name, child) in node.children { visit(child, path.appending(name), node.perms) }
        }
        func visitUnlisted(_ node: Node) {
            countRemoval(of: node.perms.owner.domid)
            for child in node.children.values { visitUnlisted(child) }
        }
        if listing { visit(subtree, path, parentPerms) } else { visitUnlisted(subtree) }
        for (owner, count) in owners {
            let left = ownerCounts[owner, default: 0] - count
            ownerCounts[owner] = left == 0 ? nil : left
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
