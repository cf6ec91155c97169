//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenstoreWire

/// Watches and transactions: per-connection state.
///
/// Transactions follow cxenstored's model: a transaction takes its copy of a node when
/// it first accesses it, from the store as it is then, and fails at commit only if a
/// node changed after the transaction accessed it. Before each of its requests, a
/// transaction whose view is older than the store catches up (``catchUp(_:of:)``):
/// its view becomes the current store with its own changes replayed, unless something
/// it already accessed has changed, which dooms it (EAGAIN at commit).
///
/// Conflict detection, with G the store generation and g(X) node X's:
///
/// 0. T starts; another connection removes /a/b/c (bumping g(/a/b)); T then sets the
///    permissions of /a/b — its first access, so it sees /a/b as it is now. Commit → OK.
///
/// 1. T starts at G=10 and reads /a (g=4). Nobody touches /a. Commit: g(/a) still 4 → OK,
///    T's log is replayed onto the store.
/// 2. T reads /a (g=4); another connection writes /a (g becomes 11). Commit: 11 ≠ 4 → EAGAIN,
///    nothing applied.
/// 3. T writes /b, which did not exist (recorded as absent); another connection creates /b.
///    Commit: /b now exists → EAGAIN. (cxenstored skips nodes T wrote; we check them too.)
/// 4. T creates /c/d under /c; another connection adds /c/e, bumping g(/c). T never read
///    /c, it only relied on /c existing with its permissions: commit replays "create /c/d"
///    onto the current /c, so both children exist → OK. (Many guests created at once all
///    add children to /local/domain; none of them conflicts.) If /c's permissions changed
///    or /c was removed meanwhile → EAGAIN; if T read /c (a DIRECTORY, say) → EAGAIN.
/// 5. Domain 7 (quota 1000 nodes, owning 100) runs T1 and T2, each creating 900 nodes.
///    T1 commits: 1000 owned → OK. T2's own checks passed against its snapshot (100 + 900),
///    but on the store it would make 1900 → ENOSPC, nothing applied.
extension XenstoreEngine {
    // MARK: WATCH, UNWATCH, RESET_WATCHES

    /// WATCH `path|token|` → OK, then one WATCH_EVENT for the path itself. tx_id is ignored.
    /// EEXIST for a duplicate path/token on this connection; E2BIG once an unprivileged
    /// domain already holds more than the watch quota.
    mutating func watch(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let arguments = try XenstorePayload.arguments(request.message.payload, count: 2)
        let path = try resolve(arguments[0], request, allowSpecial: true)
        let token = arguments[1]
        let caller = request.caller
        if connections[request.id]?.hasWatch(path: path, token: token) == true { throw .EEXIST }
        if let limits = limits(request) {
            let held = unprivilegedConnections(of: caller.domid).reduce(0) { $0 + $1.watches.count }
            if held.exceeds(limits.watches) { throw .E2BIG }
        }
        let watch = Watch(path: path, token: token)
        connections[request.id]?.addWatch(watch)
        addWatcher(request.id)
        let event = XenstoreMessage.watchEvent(path: reportedPath(path, for: watch, caller), token: token)
        return [request.ok] + (event.fitsOnWire ? [.send(to: request.id, event)] : [])
    }

    /// UNWATCH `path|token|` → OK, or ENOENT if this connection has no such watch.
    mutating func unwatch(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let arguments = try XenstorePayload.arguments(request.message.payload, count: 2)
        let path = try resolve(arguments[0], request, allowSpecial: true)
        guard connections[request.id]?.removeWatch(path: path, token: arguments[1]) == true else { throw .ENOENT }
        if connections[request.id]?.watches.isEmpty ?? true { removeWatcher(request.id) }
        return [request.ok]
    }

    /// RESET_WATCHES (payload ignored) → OK; drops the caller's watches and transactions.
    mutating func resetWatches(_ request: RequestContext) -> [XenstoreEffect] {
        connections[request.id]?.removeAllWatches()
        removeWatcher(request.id)
        connections[request.id]?.transactions = [:]
        return [request.ok]
    }

    // MARK: TRANSACTION_START, TRANSACTION_END

    /// TRANSACTION_START (payload ignored) → the new id in decimal plus NUL. Ids are per
    /// connection and start at 1. EBUSY inside a transaction; ENOSPC once an unprivileged
    /// domain already has more than the transaction quota open.
    mutating func transactionStart(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        if request.message.txID != 0 { throw .EBUSY }
        guard let connection = connections[request.id] else { throw .ENOENT }
        if let limits = limits(request) {
            let open = unprivilegedConnections(of: connection.domid).reduce(0) { $0 + $1.transactions.count }
            if open.exceeds(limits.transactions) { throw .ENOSPC }
        }
        var id = connection.nextTransactionID
        while id == 0 || connection.transactions[id] != nil { id &+= 1 }  // ids wrap; 0 means "none"
        connections[request.id]?.nextTransactionID = id &+ 1
        let current = store
        connections[request.id]?.transactions[id] = Transaction(
            base: current,
            tree: current,
            syncedVersion: storeVersion
        )
        return [request.reply(XenstorePayload.string(String(id)))]
    }

    /// TRANSACTION_END `T|` commits, `F|` aborts; the header's tx_id names the transaction.
    /// Commit → OK and the transaction's watch events, or EAGAIN with nothing applied.
    mutating func transactionEnd(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let argument = try XenstorePayload.singleArgument(request.message.payload)
        let commit: Bool
        switch argument {
        case [UInt8(ascii: "T")]: commit = true
        case [UInt8(ascii: "F")]: commit = false
        default: throw .EINVAL
        }
        guard request.inTransaction, let transaction = connections[request.id]?.transactions[request.message.txID]
        else { throw .ENOENT }
        connections[request.id]?.transactions[request.message.txID] = nil
        guard commit else { return [request.ok] }
        if transaction.lost || transaction.conflicted || changedSinceAccessed(transaction) { throw .EAGAIN }
        var tree = store
        tree.replay(transaction.log, generation: nextGeneration())
        // Quotas were checked against the transaction's snapshot; other transactions
        // of the same domain may have committed since. Count again on the result,
        // or eleven transactions of 900 nodes each would all fit a quota of 1000.
        if let limits = limits(request) {
            let domid = request.caller.domid
            let after = tree.nodeCount(ownedBy: domid)
            if after > store.nodeCount(ownedBy: domid), after.exceeds(limits.nodes) { throw .ENOSPC }
        }
        store = tree
        return [request.ok] + fire(transaction.triggers)
    }
}

extension XenstoreEngine {
    /// Brings the view of transaction `txID` of connection `id` up to the current
    /// store before a request in it, as cxenstored's per-node copies would see it:
    /// nodes the transaction has not accessed yet read as they are now. If a node it
    /// did access has changed (or an ancestor it relied on changed permissions or
    /// went away), nothing is caught up and the transaction is marked to fail.
    mutating func catchUp(_ txID: UInt32, of id: ConnectionID) {
        guard let transaction = connections[id]?.transactions[txID], transaction.syncedVersion != storeVersion,
            !transaction.conflicted, !transaction.lost
        else { return }
        if changedSinceAccessed(transaction) {
            connections[id]?.transactions[txID]?.conflicted = true
            return
        }
        var tree = store
        // The transaction's own nodes get the current generation: nobody else sees them.
        tree.replay(transaction.log, generation: generation)
        let current = store
        connections[id]?.transactions[txID]?.rebase(onto: current, tree: tree, version: storeVersion)
    }

    /// Whether the store changed under `transaction`: a node it read or wrote has
    /// another generation than when it first accessed it, or an ancestor it relied on
    /// has other permissions (or is gone). Such a transaction can only fail.
    func changedSinceAccessed(_ transaction: Transaction) -> Bool {
        transaction.touched.contains { path, seen in store.node(at: path)?.generation != seen }
            || transaction.dependencies.contains { path, seen in
                transaction.touched.index(forKey: path) == nil && store.node(at: path)?.perms != seen
            }
    }
}
