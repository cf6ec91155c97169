//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// Per-domain resource limits. They apply to **unprivileged** connections only.
///
/// Defaults and errors are cxenstored 4.17's (`xenstored_core.c`):
///
/// | Field | Default | Flag | Exceeded → | Rule |
/// |---|---|---|---|---|
/// | ``nodes`` | 1000 | `-E` | ENOSPC | nodes owned by the domain, at most this many |
/// | ``watches`` | 128 | `-W` | E2BIG | refused once the domain holds *more than* 128: 129 fit |
/// | ``nodeSize`` | 2048 | `-S` | ENOSPC | record size must stay below it (see below) |
/// | ``transactions`` | 10 | `-t` | ENOSPC | refused once *more than* 10 are open: 11 fit |
/// | ``permissions`` | 5 | `-A` | ENOSPC | entries in one SET_PERMS, owner included |
/// | ``transactionNodes`` | 1024 | `-Q transaction-nodes=` | ENOSPC | distinct nodes read or written |
/// | ``pathLength`` | 2048 | `-M` | EINVAL | see ``XenstorePath``; clamped to 1…2048 |
///
/// The record size is 24 (header) + 8 per permission + the value + each child name and its
/// NUL. The reference gives 2015 value bytes as the most a one-permission leaf can hold, so a
/// record of 2048 bytes is already too big (24 + 8 + 2015 = 2047 is the largest allowed).
///
/// A value of 0 disables that check (as GET/SET_QUOTA define it), except ``pathLength``.
public struct Quotas: Hashable, Sendable {
    public var nodes: Int
    public var watches: Int
    public var nodeSize: Int
    public var transactions: Int
    public var permissions: Int
    public var transactionNodes: Int
    public var pathLength: Int

    public init(
        nodes: Int = 1000,
        watches: Int = 128,
        nodeSize: Int = 2048,
        transactions: Int = 10,
        permissions: Int = 5,
        transactionNodes: Int = 1024,
        pathLength: Int = 2048
    ) {
        self.nodes = nodes
        self.watches = watches
        self.nodeSize = nodeSize
        self.transactions = transactions
        self.permissions = permissions
        self.transactionNodes = transactionNodes
        self.pathLength = pathLength
    }

    /// cxenstored 4.17's defaults.
    public static let cxenstored417 = Quotas()

    /// The names GET_QUOTA / SET_QUOTA use, in the order GET_QUOTA lists them.
    public static let wireNames = ["nodes", "watches", "transactions", "node-size", "permissions"]

    /// The quota a wire name refers to.
    public subscript(wireName name: String) -> Int? {
        get {
            switch name {
            case "nodes": nodes
            case "watches": watches
            case "transactions": transactions
            case "node-size": nodeSize
            case "permissions": permissions
            default: nil
            }
        }
        set {
            guard let newValue else { return }
            switch name {
            case "nodes": nodes = newValue
            case "watches": watches = newValue
            case "transactions": transactions = newValue
            case "node-size": nodeSize = newValue
            case "permissions": permissions = newValue
            default: break
            }
        }
    }

    /// The effective path limit (cxenstored clamps `-M` to XENSTORE_REL_PATH_MAX).
    var effectivePathLength: Int { min(max(pathLength, 1), 2048) }
}

extension Int {
    /// `count` is over a limit where 0 means "no limit".
    @inline(__always)
    func exceeds(_ limit: Int) -> Bool { limit > 0 && self > limit }
}
