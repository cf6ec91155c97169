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

/// Names one client connection of the engine: a Unix-socket client or a domain's ring.
/// The I/O shell allocates the ids; the engine only compares them.
public struct ConnectionID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: ConnectionID, rhs: ConnectionID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "conn\(rawValue)" }
}

/// Something the I/O shell must do as a result of an engine call, in array order.
public enum XenstoreEffect: Hashable, Sendable {
    /// Write `message` to connection `to` (a reply or a WATCH_EVENT). Messages for one
    /// connection appear in the order they must be written. A shell ignores sends to a
    /// connection it has already closed.
    case send(to: ConnectionID, XenstoreMessage)
    /// A domain was introduced: map its ring page (`frame`, or grant 1), bind `port`, then call
    /// ``XenstoreEngine/connect(_:domid:privileged:)`` for the new ring connection.
    case introduceDomain(DomID, frame: UInt64, port: UInt32)
    /// INTRODUCE of a domain already introduced: rebind its event channel to `port`, reset the
    /// ring indices to 0 and, if the page says RECONNECT, set CONNECTED and notify the guest.
    case rebindDomain(DomID, port: UInt32)
    /// The domain was released or destroyed: unmap its ring, unbind its port, and
    /// ``XenstoreEngine/disconnect(_:)`` its ring connection.
    case releaseDomain(DomID)
    /// CONTROL `print`: a line for the daemon's log.
    case log(String)
}

/// The xenstore server core: a pure request → effects function over the node tree, the
/// connections' watches and transactions, and the domain table. No I/O, no clocks.
///
/// Use it from one actor or event loop. Each call returns the effects to carry out, in order.
/// Replies echo the request's req_id and tx_id and carry its type, or ERROR with a name from
/// the fixed table; each handler's comment gives its wire format.
///
/// Request processing (cxenstored's order): unknown type → ENOSYS; privileged-only type from an
/// unprivileged connection → EACCES; tx_id naming no open transaction of this connection →
/// ENOENT (except WATCH, UNWATCH, RESET_WATCHES, which ignore it); then the handler.
///
/// Invariants:
/// - A request answered with an error leaves the tree unchanged: handlers work on a scratch
///   copy (O(1) thanks to copy-on-write) and keep it only on success. Two deliberate
///   exceptions concern transaction bookkeeping only: TRANSACTION_END ends the transaction
///   even when it answers EAGAIN, and a read inside a transaction is recorded even when it
///   answers ENOENT/EACCES (the absence was observed).
/// - A transaction sees each node as the store held it when the transaction first accessed
///   it (cxenstored's model: its view catches up with the store before each request). It
///   commits only if no node it read or wrote changed since it accessed it (generation
///   counts), and then by replaying its log onto the store, so a commit is all or nothing;
///   its watch events fire only then.
/// - Reply-then-events: a request's reply precedes the watch events it causes (WATCH's OK
///   precedes its first event), except that `.introduceDomain`/`.rebindDomain` precede the
///   INTRODUCE reply and `.releaseDomain` comes last.
public struct XenstoreEngine: Sendable {
    /// Global quotas: the defaults for every domain (SET_QUOTA without a domid changes them).
    public var quotas: Quotas
    /// The features this server supports (GET_FEATURE; SET_FEATURE may only narrow them).
    public let supportedFeatures: XenstoreServerFeatures

    /// The store. Set through here (which counts the change), or changed in place
    /// through ``changeTree(_:_:)``.
    var store: Tree {
        get { storeStorage }
        set {
            storeStorage = newValue
            storeVersion &+= 1
        }
    }
    private(set) var storeStorage: Tree
    /// Bumped at every change of ``store``: a transaction whose view was made at
    /// another version catches up before its next request (see ``catchUp(_:of:)``).
    var storeVersion: UInt64 = 0
    var generation: UInt64 = 1
    var connections: OrderedDictionary<ConnectionID, Connection> = [:]
    /// Connections holding at least one watch, in ``connections``' order: ``fire(_:)``
    /// goes through these alone, so a thousand guests without watches cost nothing per
    /// change. Kept by ``addWatcher(_:)`` and ``removeWatcher(_:)``.
    private(set) var watcherIDs: [ConnectionID] = []
    var domains: [DomID: DomainEntry] = [:]
    var targets: [DomID: DomID] = [:]
    var pendingFeatures: [DomID: XenstoreServerFeatures] = [:]
    var domainQuotas: [DomID: Quotas] = [:]
    /// Where the last DIRECTORY_PART chunk outside a transaction stopped (a client
    /// reads a big directory chunk after chunk). Only a shortcut to the same answer:
    /// it holds for that path on that store version alone.
    var listingCursor: ListingCursor?
    var specialPerms: [String: XenstorePermissions] = [
        SpecialPath.introduceDomain: XenstorePermissions(owner: .dom0),
        SpecialPath.releaseDomain: XenstorePermissions(owner: .dom0),
    ]

    public init(quotas: Quotas = .cxenstored417, supportedFeatures: XenstoreServerFeatures = []) {
        self.quotas = quotas
        self.supportedFeatures = supportedFeatures
        self.storeStorage = Tree(generation: 0)
    }

    /// Changes the tree a request sees: its transaction's, or the store itself,
    /// in place. A write outside a transaction thus copies no node that only the
    /// store holds (a directory of 100,000 children is not copied to add one).
    /// Callers check everything first: nothing may fail once `body` ran.
    @discardableResult
    mutating func changeTree<R>(_ view: inout StoreView, _ body: (inout Tree) -> R) -> R {
        if view.base != nil { return body(&view.tree) }
        view.tree = Tree.placeholder  // let go of the view's reference: the store's nodes are unique again
        let result = body(&storeStorage)
        storeVersion &+= 1
        view.tree = storeStorage
        return result
    }

    // MARK: Connections

    /// Registers a connection. Unix-socket clients are `domid: .dom0, privileged: true`; a
    /// domain's ring connection is its domid, privileged only for dom0 or a `--priv-domid`.
    /// Registering an id again resets it.
    /// - Parameter persistent: the connection outlives the daemon (a guest's ring, which a
    ///   restarted xenstored serves again); a snapshot keeps it.
    public mutating func connect(_ id: ConnectionID, domid: DomID, privileged: Bool, persistent: Bool = false) {
        connections[id] = Connection(domid: domid, privileged: privileged, persistent: persistent)
        removeWatcher(id)
    }

    /// Forgets a connection with its watches and open transactions. Nothing is sent to anyone.
    public mutating func disconnect(_ id: ConnectionID) {
        connections.removeValue(forKey: id)
        removeWatcher(id)
    }

    /// Adds `id` (a connection that now holds a watch) to ``watcherIDs`` where its
    /// place in ``connections`` puts it. A connection's place never changes while it
    /// is registered, so the list stays in that order as others come and go.
    mutating func addWatcher(_ id: ConnectionID) {
        guard let place = connections.index(forKey: id), !watcherIDs.contains(id) else { return }
        // Binary search for the first watcher registered after `id`.
        var low = 0
        var high = watcherIDs.count
        while low < high {
            let middle = (low + high) / 2
            if let other = connections.index(forKey: watcherIDs[middle]), other < place {
                low = middle + 1
            } else {
                high = middle
            }
        }
        watcherIDs.insert(id, at: low)
    }

    /// Takes `id` out of ``watcherIDs`` (it holds no watch any more, or is gone).
    mutating func removeWatcher(_ id: ConnectionID) {
        if let index = watcherIDs.firstIndex(of: id) { watcherIDs.remove(at: index) }
    }

    /// Handles one request from `id`. Unknown connections get nothing (a shell bug).
    public mutating func handle(_ request: XenstoreMessage, from id: ConnectionID) -> [XenstoreEffect] {
        if request.txID != 0 {
            guard connections[id] != nil else { return [] }
            catchUp(request.txID, of: id)
        }
        guard let index = connections.index(forKey: id) else { return [] }
        let context = RequestContext(
            message: request,
            id: id,
            caller: connections.values[index].caller,
            inTransaction: request.txID != 0
                && connections.values[index].transactions.index(forKey: request.txID) != nil
        )
        do {
            return try dispatch(context)
        } catch {
            return [.send(to: id, .error(error, replyingTo: request))]
        }
    }

    // MARK: Hypervisor events

    /// The hypervisor reports that `domid` shut down or crashed. Fires `@releaseDomain` once;
    /// further calls do nothing until RESUME. Unknown domains are ignored.
    public mutating func domainShutdown(_ domid: DomID) -> [XenstoreEffect] {
        guard var entry = domains[domid], !entry.shutdownReported else { return [] }
        entry.shutdownReported = true
        domains[domid] = entry
        return fire([WatchTrigger(special: SpecialPath.releaseDomain)])
    }

    /// The hypervisor reports that `domid` no longer exists: as RELEASE without a reply.
    public mutating func domainDestroyed(_ domid: DomID) -> [XenstoreEffect] {
        guard domains[domid] != nil else { return [] }
        return teardown(domid)
    }

    // MARK: Introspection (for shells and tests; never changes anything)

    /// The value at an absolute path, or nil if there is no such node.
    public func value(at path: String) -> [UInt8]? { store.node(at: XenstorePath(trusted: path))?.value }

    /// The children of an absolute path in creation order, or nil if there is no such node.
    public func children(of path: String) -> [String]? {
        store.node(at: XenstorePath(trusted: path)).map { Array($0.children.keys) }
    }

    /// The permissions of an absolute or special path.
    public func permissions(of path: String) -> XenstorePermissions? {
        if path.hasPrefix("@") { return specialPerms[path] }
        return store.node(at: XenstorePath(trusted: path))?.perms
    }

    /// How many nodes `domid` owns.
    public func nodeCount(ownedBy domid: DomID) -> Int { store.nodeCount(ownedBy: domid) }

    /// Whether `domid` has been introduced and not released.
    public func isIntroduced(_ domid: DomID) -> Bool { domains[domid] != nil }

    /// The features a domain's ring should advertise in `server_features`.
    public func serverFeatures(for domid: DomID) -> XenstoreServerFeatures {
        domains[domid]?.features ?? pendingFeatures[domid] ?? supportedFeatures
    }

    /// The quotas in force for `domid`.
    public func quotas(for domid: DomID) -> Quotas {
        // Most stores have no per-domain quotas: skip hashing the domid for every request.
        domainQuotas.isEmpty ? quotas : domainQuotas[domid] ?? quotas
    }

    /// The connections currently registered, in registration order.
    public var connectionIDs: [ConnectionID] { Array(connections.keys) }

    /// The number of watches `id` holds.
    public func watchCount(of id: ConnectionID) -> Int { connections[id]?.watches.count ?? 0 }

    /// The ids of `id`'s open transactions, ascending.
    public func openTransactions(of id: ConnectionID) -> [UInt32] {
        connections[id].map { $0.transactions.keys.sorted() } ?? []
    }
}

// MARK: - Internal state

enum SpecialPath {
    static let introduceDomain = "@introduceDomain"
    static let releaseDomain = "@releaseDomain"
}

/// See ``XenstoreEngine/listingCursor``: the next name of `path`'s listing is the
/// `index`th, starting at byte `offset`.
struct ListingCursor: Sendable {
    let path: XenstorePath
    let storeVersion: UInt64
    let offset: Int
    let index: Int
}

struct DomainEntry: Sendable {
    var frame: UInt64
    var port: UInt32
    var features: XenstoreServerFeatures
    var shutdownReported = false
}

struct Watch: Sendable {
    /// Absolute or `@`; `wasRelative` says whether events are reported relative.
    let path: XenstorePath
    let token: [UInt8]
    /// Registration order on its connection: events for one change go out in it.
    var sequence: UInt64 = 0
}

/// A change that may fire watches.
struct WatchTrigger: Sendable {
    let path: XenstorePath
    /// Descendants of a recursive removal match only watches set exactly on them.
    let exactOnly: Bool
    /// A watcher sees the event if any of these lets it read: the node's old and new
    /// permissions and its parent's, so a watcher that just lost access still hears of it.
    let perms: [XenstorePermissions]

    init(path: XenstorePath, exactOnly: Bool = false, perms: [XenstorePermissions]) {
        self.path = path
        self.exactOnly = exactOnly
        self.perms = perms
    }

    init(special: String) {
        self.init(path: XenstorePath(trusted: special), perms: [])
    }
}

extension Array where Element == XenstorePermissions {
    /// The non-nil ones, in order, in one allocation (a trigger is made per change).
    static func some(_ a: XenstorePermissions?, _ b: XenstorePermissions?, _ c: XenstorePermissions?) -> Self {
        var result: Self = []
        result.reserveCapacity(3)
        if let a { result.append(a) }
        if let b { result.append(b) }
        if let c { result.append(c) }
        return result
    }
}

/// A tree mutation, recorded so that a transaction's commit can replay it.
enum TreeOperation: Sendable {
    case write(XenstorePath, value: [UInt8]?, newOwner: DomID?)
    case remove(XenstorePath)
    case setPerms(XenstorePath, XenstorePermissions)
}

struct Transaction: Sendable {
    /// The store the transaction's view was last made from (at TRANSACTION_START, or
    /// at its latest catch-up): where a node it accesses for the first time is read.
    var base: Tree
    /// ``base`` with the transaction's own changes: what its requests see.
    var tree: Tree
    /// The ``XenstoreEngine/storeVersion`` of ``base``.
    var syncedVersion: UInt64
    /// Every node read or written, with its generation when the transaction first
    /// accessed it (nil: it did not exist).
    var touched: [XenstorePath: UInt64?] = [:]
    /// Ancestors whose child list a write or removal changed without the transaction
    /// reading them, with their permissions when first relied on (nil: absent). Commit
    /// needs only these unchanged — not their generation, which a sibling's creation bumps.
    var dependencies: [XenstorePath: XenstorePermissions?] = [:]
    var log: [TreeOperation] = []
    var triggers: [WatchTrigger] = []
    /// Its work was lost in a journal snapshot: it commits with EAGAIN.
    var lost = false
    /// Something it accessed changed after it accessed it: it commits with EAGAIN.
    var conflicted = false

    /// Keeps what a successful request in the transaction did.
    mutating func keep(_ view: StoreView) {
        tree = view.tree
        touched = view.touched
        dependencies = view.dependencies
        log = view.log
        triggers += view.triggers
    }

    /// Catches up with `store`: the view becomes `tree`, the store with this
    /// transaction's log replayed.
    mutating func rebase(onto store: Tree, tree: Tree, version: UInt64) {
        base = store
        self.tree = tree
        syncedVersion = version
    }
}

/// Who sent a request: all that permission checks and path resolution need of its
/// connection (a request carries this, not a copy of the whole connection).
struct Caller: Sendable {
    let domid: DomID
    let privileged: Bool
    /// The base of relative paths (made once: every request with a path needs it).
    let domainPath: XenstorePath
}

struct Connection: Sendable {
    let caller: Caller
    var domid: DomID { caller.domid }
    var privileged: Bool { caller.privileged }
    /// A guest's ring: it survives a restart of the daemon.
    var persistent = false
    /// In registration order.
    private(set) var watches: [Watch] = []
    /// The same watches by path: a change is matched against its own path and its
    /// ancestors' (O(depth)), not against every watch (consoled holds two per domain).
    private var watchesByPath: [String: [Watch]] = [:]
    private var nextWatchSequence: UInt64 = 0
    var transactions: [UInt32: Transaction] = [:]
    var nextTransactionID: UInt32 = 1

    func hasWatch(path: XenstorePath, token: [UInt8]) -> Bool {
        watchesByPath[path.rawValue]?.contains { $0.token == token } ?? false
    }

    mutating func addWatch(_ watch: Watch) {
        var watch = watch
        watch.sequence = nextWatchSequence
        nextWatchSequence &+= 1
        watches.append(watch)
        watchesByPath[watch.path.rawValue, default: []].append(watch)
    }

    /// Removes the watch on `path` with `token`; false if there is none.
    mutating func removeWatch(path: XenstorePath, token: [UInt8]) -> Bool {
        guard let index = watches.firstIndex(where: { $0.path.rawValue == path.rawValue && $0.token == token }) else {
            return false
        }
        watches.remove(at: index)
        watchesByPath[path.rawValue]?.removeAll { $0.token == token }
        if watchesByPath[path.rawValue]?.isEmpty ?? false { watchesByPath[path.rawValue] = nil }
        return true
    }

    mutating func removeAllWatches() {
        watches = []
        watchesByPath = [:]
    }

    /// The watches `trigger` fires, in registration order: those on its path, and —
    /// unless the trigger is exact-only or special — those on any ancestor.
    func watches(matching trigger: WatchTrigger) -> [Watch] {
        let path = trigger.path.rawValue
        if trigger.exactOnly || trigger.path.isSpecial { return watchesByPath[path] ?? [] }
        var matched = watchesByPath[path] ?? []
        var levels = matched.isEmpty ? 0 : 1
        // Every proper ancestor: "/", then each prefix ending before a "/".
        if let root = watchesByPath["/"], path != "/" {
            matched += root
            levels += 1
        }
        var index = path.utf8.index(after: path.utf8.startIndex)
        while index < path.utf8.endIndex {
            if path.utf8[index] == UInt8(ascii: "/"), let found = watchesByPath[String(path[..<index])] {
                matched += found
                levels += 1
            }
            index = path.utf8.index(after: index)
        }
        return levels > 1 ? matched.sorted { $0.sequence < $1.sequence } : matched
    }

    init(domid: DomID, privileged: Bool, persistent: Bool = false) {
        self.caller = Caller(
            domid: domid,
            privileged: privileged,
            domainPath: XenstorePath(trusted: XenstorePath.domainPath(domid))
        )
        self.persistent = persistent
    }
}

struct RequestContext {
    let message: XenstoreMessage
    let id: ConnectionID
    let caller: Caller
    /// The request names a transaction (tx_id ≠ 0) that its connection has open.
    let inTransaction: Bool

    var type: XenstoreMessageType { message.type }

    func reply(_ payload: [UInt8]) -> XenstoreEffect { .send(to: id, .reply(to: message, payload: payload)) }
    var ok: XenstoreEffect { .send(to: id, .ok(replyingTo: message)) }
}
