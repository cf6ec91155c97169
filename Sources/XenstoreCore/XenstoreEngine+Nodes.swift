//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenstoreWire

/// The tree a request works on: the store, or its transaction's copy. Handlers mutate a
/// `StoreView` and ``XenstoreEngine/commit(_:_:reply:)`` keeps it only if the request succeeded.
struct StoreView {
    var tree: Tree
    /// The transaction's snapshot, nil outside transactions.
    let base: Tree?
    var touched: [XenstorePath: UInt64?]
    var dependencies: [XenstorePath: XenstorePermissions?] = [:]
    var log: [TreeOperation]
    /// The changes that may fire watches. Kept only if something can hear them:
    /// inside a transaction (a watch may be set before it commits), or when some
    /// connection holds a watch. Otherwise nobody would be told, so nothing is built.
    private(set) var triggers: [WatchTrigger] = []
    let keepsTriggers: Bool

    mutating func changed(_ trigger: @autoclosure () -> WatchTrigger) {
        if keepsTriggers { triggers.append(trigger()) }
    }

    mutating func changed(_ triggers: @autoclosure () -> [WatchTrigger]) {
        if keepsTriggers { self.triggers += triggers() }
    }

    /// Records that the request read or wrote `path` (only inside a transaction).
    mutating func touch(_ path: XenstorePath) {
        guard let base, touched.index(forKey: path) == nil else { return }
        touched.updateValue(base.node(at: path)?.generation, forKey: path)
    }

    /// Records that the request relied on `path` existing with its permissions —
    /// the ancestor a write creates under, the parent a removal detaches from —
    /// without reading it: commit replays the change onto whatever children the
    /// ancestor has by then, so only its existence and permissions must hold.
    mutating func depend(_ path: XenstorePath) {
        guard let base, touched.index(forKey: path) == nil, dependencies.index(forKey: path) == nil else { return }
        dependencies.updateValue(base.node(at: path)?.perms, forKey: path)
    }
}

extension XenstoreEngine {
    func view(for request: RequestContext) -> StoreView {
        if request.inTransaction, let transaction = connections[request.id]?.transactions[request.message.txID] {
            return StoreView(
                tree: transaction.tree,
                base: transaction.base,
                touched: transaction.touched,
                dependencies: transaction.dependencies,
                log: transaction.log,
                keepsTriggers: true
            )
        }
        return StoreView(tree: store, base: nil, touched: [:], log: [], keepsTriggers: !watcherIDs.isEmpty)
    }

    /// Keeps a successful request's changes: in its transaction (events wait for commit), or
    /// in the store (events fire now); then answers: `reply` first, then any events.
    ///
    /// - Throws: ENOSPC if an unprivileged transaction now touches too many nodes.
    mutating func commit(
        _ view: StoreView,
        _ request: RequestContext,
        reply: XenstoreEffect
    ) throws(XenstoreError) -> [XenstoreEffect] {
        // Outside a transaction the store already holds the change (changeTree).
        guard request.inTransaction else {
            let events = fire(view.triggers)
            return events.isEmpty ? [reply] : [reply] + events
        }
        // The nodes a transaction accessed, as cxenstored counts them: read, written, or relied on.
        if let limits = limits(request), (view.touched.count + view.dependencies.count).exceeds(limits.transactionNodes)
        {
            throw .ENOSPC
        }
        // One access: each `connections[id]?.transactions[tx]?` chain moves the
        // connection and the transaction out and back.
        connections[request.id]?.transactions[request.message.txID]?.keep(view)
        return [reply]
    }

    /// The error for a missing node that does not leak existence: ENOENT only if the caller
    /// may read the nearest existing ancestor, EACCES otherwise.
    func missing(_ path: XenstorePath, in tree: Tree, _ request: RequestContext) -> XenstoreError {
        missing(nearestPerms: tree.deepest(path).node.perms, request)
    }

    /// ``missing(_:in:_:)`` when the nearest existing ancestor's permissions are known.
    func missing(nearestPerms: XenstorePermissions, _ request: RequestContext) -> XenstoreError {
        canRead(request.caller, nearestPerms) ? .ENOENT : .EACCES
    }

    /// The node at `path`, which the caller must be allowed to read.
    func readable(
        _ path: XenstorePath,
        _ view: inout StoreView,
        _ request: RequestContext
    ) throws(XenstoreError)
        -> Node
    {
        view.touch(path)
        guard let node = view.tree.node(at: path) else { throw missing(path, in: view.tree, request) }
        guard canRead(request.caller, node.perms) else { throw .EACCES }
        return node
    }

    /// Records inside a transaction that `path` was read, before the read can fail: ENOENT is an
    /// observation too, and if the node appears before commit the transaction must not commit.
    ///
    /// - Throws: ENOSPC if an unprivileged transaction would touch too many nodes.
    mutating func observe(_ path: XenstorePath, _ request: RequestContext) throws(XenstoreError) {
        let txID = request.message.txID
        guard txID != 0, let transaction = connections[request.id]?.transactions[txID],
            transaction.touched.index(forKey: path) == nil
        else { return }
        if let limits = limits(request),
            (transaction.touched.count + transaction.dependencies.count + 1).exceeds(limits.transactionNodes)
        {
            throw .ENOSPC
        }
        connections[request.id]?.transactions[txID]?.touched.updateValue(
            transaction.base.node(at: path)?.generation,
            forKey: path
        )
    }

    mutating func nextGeneration() -> UInt64 {
        generation &+= 1  // a 64-bit counter bumped once per change: wrap is unreachable in practice
        return generation
    }

    // MARK: READ, DIRECTORY, DIRECTORY_PART, GET_PERMS

    /// READ `path|` → the raw value, no NUL.
    mutating func read(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let path = try resolve(XenstorePayload.singleArgument(request.message.payload), request)
        try observe(path, request)
        var view = view(for: request)
        let node = try readable(path, &view, request)
        return try commit(view, request, reply: request.reply(node.value))
    }

    /// DIRECTORY `path|` → child names each followed by NUL; E2BIG if that exceeds 4096 bytes.
    mutating func directory(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let path = try resolve(XenstorePayload.singleArgument(request.message.payload), request)
        try observe(path, request)
        var view = view(for: request)
        let listing = try readable(path, &view, request).listing
        guard listing.count <= XenstoreInterface.payloadMax else { throw .E2BIG }
        return try commit(view, request, reply: request.reply(listing))
    }

    /// DIRECTORY_PART `path|offset|` → `generation|` then the names from byte `offset` of the
    /// full listing, whole names only, as many as fit; if the listing ends in this chunk one
    /// extra NUL follows. An offset at or past the end gives `generation||`.
    mutating func directoryPart(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let arguments = try XenstorePayload.arguments(request.message.payload, count: 2)
        let path = try resolve(arguments[0], request)
        guard let offset = XenstorePayload.decimal(arguments[1], as: UInt64.self) else { throw .EINVAL }
        try observe(path, request)
        var view = view(for: request)
        let node = try readable(path, &view, request)
        var reply = XenstorePayload.string(String(node.generation))
        // Walk the names instead of building the whole listing for every chunk: a
        // client reads a big directory in hundreds of chunks.
        let start = Int(exactly: offset) ?? Int.max
        let budget = XenstoreInterface.payloadMax - reply.count - 1  // one NUL may end the listing
        let names = node.children.keys
        // Where the current name starts in the full listing, and its index. A chunk
        // that follows the last one outside a transaction, on an unchanged store,
        // starts where that one stopped instead of walking the names before it.
        var position = 0
        var index = 0
        if request.message.txID == 0, let cursor = listingCursor, cursor.path == path,
            cursor.storeVersion == storeVersion, cursor.offset == start, cursor.index <= names.count
        {
            (position, index) = (cursor.offset, cursor.index)
        }
        var chunk: [UInt8] = []
        var ended = true
        while index < names.count {
            let length = names[index].utf8.count + 1
            if position + length > start {
                // From `start` on: a client's offset may fall inside a name.
                let skip = max(start - position, 0)
                guard chunk.count + length - skip <= budget else {
                    ended = false
                    break
                }
                chunk += names[index].utf8.dropFirst(skip)
                chunk.append(0)
            }
            position += length
            index += 1
        }
        listingCursor =
            ended || request.message.txID != 0
            ? nil : ListingCursor(path: path, storeVersion: storeVersion, offset: position, index: index)
        // Whole names only; a first name longer than the budget cannot go at all.
        if !ended && chunk.isEmpty { throw .E2BIG }
        reply += chunk
        if ended { reply.append(0) }
        return try commit(view, request, reply: request.reply(reply))
    }

    /// GET_PERMS `path|` → each permission string followed by NUL, owner first.
    mutating func getPerms(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let path = try resolve(XenstorePayload.singleArgument(request.message.payload), request, allowSpecial: true)
        if path.isSpecial {
            guard let perms = specialPerms[path.rawValue] else { throw .ENOENT }
            guard canRead(request.caller, perms) else { throw .EACCES }
            return [request.reply(perms.wire)]
        }
        try observe(path, request)
        var view = view(for: request)
        let node = try readable(path, &view, request)
        return try commit(view, request, reply: request.reply(node.perms.wire))
    }

    // MARK: WRITE, MKDIR

    /// WRITE `path|value` / MKDIR `path|`. Missing ancestors are created with empty values.
    /// New nodes copy the nearest existing ancestor's permissions; an unprivileged creator
    /// becomes their owner. MKDIR of an existing node changes nothing and fires nothing.
    mutating func write(_ request: RequestContext, mkdir: Bool) throws(XenstoreError) -> [XenstoreEffect] {
        let pathBytes: [UInt8]
        let value: [UInt8]?
        if mkdir {
            pathBytes = try XenstorePayload.singleArgument(request.message.payload)
            value = nil
        } else {
            (pathBytes, value) = try XenstorePayload.splitFirst(request.message.payload)
        }
        let path = try resolve(pathBytes, request)
        let caller = request.caller
        let limits = limits(request)
        let checksSize = limits.map { $0.nodeSize > 0 } ?? false
        var view = view(for: request)
        view.touch(path)

        // One walk for everything the checks need. Only fields are kept, not the
        // node: a copy of it still alive when the child is added would make that
        // insertion copy the ancestor's whole child list.
        let (depth, found, parentPerms, foundValueSize, foundRecordSize) = {
            let found = view.tree.deepest(path)
            return (
                found.depth, found.node.perms, found.parentPerms, found.node.value.count,
                checksSize ? found.node.recordSize : 0
            )
        }()
        let exists = depth == path.components.count
        let newOwner = caller.privileged ? nil : caller.domid
        guard canWrite(caller, found) else { throw .EACCES }
        if exists && mkdir { return try commit(view, request, reply: request.ok) }
        let newNodes = path.components.count - depth
        if !exists {
            if let limits, (view.tree.nodeCount(ownedBy: caller.domid) + newNodes).exceeds(limits.nodes) {
                throw .ENOSPC
            }
            if view.base != nil {
                view.depend(path.prefix(depth))
                var cursor = path
                for _ in 1..<newNodes {
                    cursor = cursor.parent ?? cursor
                    view.touch(cursor)
                }
            }
        }

        if let limits, checksSize {
            // The sizes the written node and the ancestor that gains a child will
            // have, checked before anything changes.
            let sizes: [Int]
            if exists {
                sizes = [foundRecordSize - foundValueSize + (value?.count ?? foundValueSize)]
            } else {
                let firstNew = path.components[depth]
                sizes = [
                    24 + 8 * found.entries.count + (value?.count ?? 0),
                    foundRecordSize + firstNew.utf8.count + 1,
                ]
            }
            if sizes.contains(where: { $0 >= limits.nodeSize }) { throw .ENOSPC }
        }
        let generation = nextGeneration()
        changeTree(&view) { $0.write(path, value: value, newOwner: newOwner, generation: generation) }
        if view.base != nil { view.log.append(.write(path, value: value, newOwner: newOwner)) }
        // The permissions after the change, known without another walk: an existing
        // node keeps its own; new nodes take the ancestor's, with the new owner.
        var newPerms = found
        if !exists, let newOwner { newPerms.owner.domid = newOwner }
        let parentAfter = exists ? parentPerms : (newNodes == 1 ? found : newPerms)
        view.changed(WatchTrigger(path: path, perms: .some(exists ? found : nil, newPerms, parentAfter)))
        return try commit(view, request, reply: request.ok)
    }

    // MARK: RM

    /// RM `path|`: removes the subtree. A missing node whose parent exists is not an error.
    /// Fires one event for the subtree root (ancestor watches see it) and an exact-match event
    /// for each removed descendant.
    mutating func remove(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let path = try resolve(XenstorePayload.singleArgument(request.message.payload), request)
        guard !path.isRoot else { throw .EINVAL }
        var view = view(for: request)
        view.touch(path)
        // The node, or the nearest existing ancestor, in one walk.
        let (depth, found) = {
            let found = view.tree.deepest(path)
            return (found.depth, found.node.perms)
        }()
        let inTransaction = view.base != nil
        // The removal relies on the parent existing with its permissions.
        if inTransaction, let parent = path.parent { view.depend(parent) }
        guard depth == path.components.count else {
            // Only the parent's existence and permissions decide the answer.
            guard depth == path.components.count - 1 else { throw missing(nearestPerms: found, request) }
            guard canRead(request.caller, found) else { throw .EACCES }
            return try commit(view, request, reply: request.ok)
        }
        guard canWrite(request.caller, found) else { throw .EACCES }
        let generation = nextGeneration()
        // The removed nodes are needed for watch events and a transaction's log only.
        let listing = view.keepsTriggers || inTransaction
        let removed = changeTree(&view) { $0.remove(path, generation: generation, listing: listing) }
        view.changed(removalTriggers(removed))
        if inTransaction {
            view.log.append(.remove(path))
            for entry in removed { view.touch(entry.path) }
        }
        return try commit(view, request, reply: request.ok)
    }

    /// Events for a removed subtree (pre-order list from ``Tree/remove(_:generation:listing:)``):
    /// the subtree root's for every watch on it or above, then an exact-match event
    /// for each descendant.
    func removalTriggers(_ removed: [Tree.RemovedNode]) -> [WatchTrigger] {
        removed.enumerated().map { index, entry in
            WatchTrigger(path: entry.path, exactOnly: index > 0, perms: [entry.perms, entry.parentPerms])
        }
    }

    // MARK: SET_PERMS

    /// SET_PERMS `path|perm|perm|...`: only the owner (or a privileged connection); only
    /// privileged connections may change the owner (EPERM). `@introduceDomain` and
    /// `@releaseDomain` accept it too (their default is `n0`).
    mutating func setPerms(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let (pathBytes, rest) = try XenstorePayload.splitFirst(request.message.payload)
        let path = try resolve(pathBytes, request, allowSpecial: true)
        guard let perms = XenstorePermissions(wire: rest) else { throw .EINVAL }
        let limits = limits(request)
        if let limits, perms.entries.count.exceeds(limits.permissions) { throw .ENOSPC }
        let caller = request.caller

        if path.isSpecial {
            guard let old = specialPerms[path.rawValue] else { throw .ENOENT }
            guard access(caller, old).owner else { throw .EACCES }
            if perms.owner.domid != old.owner.domid && !caller.privileged { throw .EPERM }
            specialPerms[path.rawValue] = perms
            return [request.ok]
        }

        var view = view(for: request)
        view.touch(path)
        guard let node = view.tree.node(at: path) else { throw missing(path, in: view.tree, request) }
        guard access(caller, node.perms).owner else { throw .EACCES }
        if perms.owner.domid != node.perms.owner.domid && !caller.privileged { throw .EPERM }
        if let limits, limits.nodeSize > 0,
            node.recordSize + 8 * (perms.entries.count - node.perms.entries.count) >= limits.nodeSize
        {
            throw .ENOSPC
        }
        let generation = nextGeneration()
        changeTree(&view) { $0.setPerms(path, perms, generation: generation) }
        view.log.append(.setPerms(path, perms))
        let parentPerms = path.parent.flatMap { view.tree.node(at: $0)?.perms }
        view.changed(WatchTrigger(path: path, perms: .some(node.perms, perms, parentPerms)))
        return try commit(view, request, reply: request.ok)
    }
}
