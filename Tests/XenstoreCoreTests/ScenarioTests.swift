//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import XenABI
import XenstoreWire

@testable import XenstoreCore

/// dom0 creates a home for guests 1 and 2, owned by them and closed to others (`n<id>`).
let homes: [Step] = [
    step(C.d0, .mkdir, "/local/domain/1\0", .ok),
    step(C.d0, .setPerms, "/local/domain/1\0n1\0", .ok),
    step(C.d0, .mkdir, "/local/domain/2\0", .ok),
    step(C.d0, .setPerms, "/local/domain/2\0n2\0", .ok),
    step(C.d0, .write, "/local/domain/1/secret\0s", .ok),
]

@Suite("Scenario tables")
struct ScenarioTests {
    @Test func permissions() {
        var h = Harness()
        h.run(homes)
        h.run([
            // dom0 created the node under guest 1's home: it keeps the parent's owner.
            step(C.d0, .getPerms, "/local/domain/1/secret\0", .payload("n1\0")),
            step(C.g1, .read, "/local/domain/1/secret\0", .payload("s")),
            // A guest cannot read another guest's node.
            step(C.g2, .read, "/local/domain/1/secret\0", .error(.EACCES)),
            step(C.g2, .directory, "/local/domain/1\0", .error(.EACCES)),
            step(C.g2, .getPerms, "/local/domain/1/secret\0", .error(.EACCES)),
            step(C.g2, .write, "/local/domain/1/x\0v", .error(.EACCES)),
            step(C.g2, .mkdir, "/local/domain/1/x\0", .error(.EACCES)),
            step(C.g2, .rm, "/local/domain/1/secret\0", .error(.EACCES)),
            // ENOENT vs EACCES does not reveal whether a node exists.
            step(C.g2, .read, "/local/domain/1/missing\0", .error(.EACCES)),
            step(C.g2, .read, "/local/domain/1/a/b/c\0", .error(.EACCES)),
            step(C.g2, .read, "/nothing/here\0", .error(.EACCES)),
            step(C.g1, .read, "/local/domain/1/missing\0", .error(.ENOENT)),
            step(C.g2, .read, "/local/domain/2/missing\0", .error(.ENOENT)),
            step(C.d0, .read, "/nothing/here\0", .error(.ENOENT)),
            step(C.g1, .read, "/tool/xenstored\0", .error(.EACCES)),
            // Relative paths resolve against the caller's home; the creator becomes owner.
            step(C.g1, .write, "data\0v", .ok),
            step(C.g1, .getPerms, "data\0", .payload("n1\0")),
            step(C.d0, .read, "/local/domain/1/data\0", .payload("v")),
            step(C.d0, .read, "data\0", .error(.ENOENT)),  // dom0's home is /local/domain/0
            // Only the owner sets permissions; only privileged connections change the owner.
            step(C.g1, .setPerms, "data\0n1\0r2\0", .ok),
            step(C.g2, .read, "/local/domain/1/data\0", .payload("v")),
            step(C.g2, .write, "/local/domain/1/data\0w", .error(.EACCES)),
            step(C.g2, .setPerms, "/local/domain/1/data\0b2\0", .error(.EACCES)),
            step(C.g1, .setPerms, "data\0n2\0", .error(.EPERM)),
            step(C.g1, .getPerms, "data\0", .payload("n1\0r2\0")),
            step(C.d0, .setPerms, "/local/domain/1/data\0n2\0", .ok),
            step(C.g2, .read, "/local/domain/1/data\0", .payload("v")),
            step(C.g2, .setPerms, "/local/domain/1/data\0n2\0r1\0", .ok),
            step(C.g1, .write, "data\0w", .error(.EACCES)),
            step(C.g1, .read, "data\0", .payload("v")),
            // Malformed SET_PERMS.
            step(C.d0, .setPerms, "/local/domain/1/data\0", .error(.EINVAL)),
            step(C.d0, .setPerms, "/local/domain/1/data\0q1\0", .error(.EINVAL)),
            step(C.d0, .setPerms, "/local/domain/1/nope\0n1\0", .error(.ENOENT)),
        ])
    }

    @Test func creatorOwnershipAndDefaultAccess() {
        var h = Harness()
        h.run([
            step(C.d0, .mkdir, "/shared\0", .ok),
            step(C.d0, .setPerms, "/shared\0b0\0", .ok),  // owner 0, everybody may read and write
            step(C.g1, .write, "/shared/mine\0x", .ok),
            step(C.g1, .getPerms, "/shared/mine\0", .payload("b1\0")),
            step(C.g1, .write, "/shared/deep/er\0y", .ok),
            step(C.d0, .getPerms, "/shared/deep\0", .payload("b1\0")),
            step(C.d0, .write, "/shared/dom0s\0z", .ok),
            step(C.d0, .getPerms, "/shared/dom0s\0", .payload("b0\0")),
            step(C.g2, .read, "/shared/mine\0", .payload("x")),  // default letter b
        ])
        #expect(h.engine.nodeCount(ownedBy: DomID(1)) == 3)
    }

    @Test func setTargetActsAsTarget() {
        var h = Harness()
        h.run(homes)
        h.run([
            step(C.g3, .read, "/local/domain/1/secret\0", .error(.EACCES)),
            step(C.g1, .setTarget, "3\0" + "1\0", .error(.EACCES)),
            // Both domains must be known (introduced, or dom0), as in cxenstored.
            step(C.d0, .setTarget, "3\0" + "1\0", .error(.ENOENT)),
            step(C.d0, .introduce, "1\0" + "1\0" + "1\0", .ok),
            step(C.d0, .setTarget, "3\0" + "1\0", .error(.ENOENT)),
            step(C.d0, .introduce, "3\0" + "3\0" + "3\0", .ok),
            step(C.d0, .setTarget, "3\0" + "5\0", .error(.ENOENT)),
            step(C.d0, .setTarget, "3\0" + "1\0", .ok),
            step(C.g3, .read, "/local/domain/1/secret\0", .payload("s")),
            step(C.g3, .setPerms, "/local/domain/1/secret\0n1\0r3\0", .ok),
            step(C.g3, .read, "/local/domain/2/x\0", .error(.EACCES)),
            step(C.d0, .setTarget, "3\0" + "x\0", .error(.EINVAL)),
        ])
    }

    @Test func pathValidation() {
        var h = Harness()
        h.run([
            step(C.d0, .read, "/a/\0", .error(.EINVAL)),
            step(C.d0, .read, "//a\0", .error(.EINVAL)),
            step(C.d0, .read, "/a//b\0", .error(.EINVAL)),
            step(C.d0, .read, "/a b\0", .error(.EINVAL)),
            step(C.d0, .read, "/a.b\0", .error(.EINVAL)),
            step(C.d0, .read, "\0", .error(.EINVAL)),
            step(C.d0, .read, "@introduceDomain\0", .error(.EINVAL)),
            step(C.d0, .write, "@x\0v", .error(.EINVAL)),
            step(C.d0, .rm, "/\0", .error(.EINVAL)),
            step(C.d0, .write, "/Az09-_@\0ok", .ok),
            step(C.d0, .read, "/Az09-_@\0", .payload("ok")),
            step(C.d0, .read, "/\0", .payload("")),
            // cxenstored's one-argument rule.
            step(C.d0, .read, "/a", .error(.EINVAL)),
            step(C.d0, .read, "/a\0\0", .error(.EINVAL)),
            step(C.d0, .read, "/a\0b\0", .error(.EINVAL)),
            step(C.d0, .write, "/novalue", .error(.EINVAL)),
        ])
    }

    @Test func initialTree() {
        var h = Harness()
        h.run([
            step(C.d0, .directory, "/\0", .payload("tool\0local\0")),
            step(C.d0, .directory, "/tool\0", .payload("xenstored\0")),
            step(C.d0, .directory, "/local\0", .payload("domain\0")),
            step(C.d0, .directory, "/local/domain\0", .payload("")),
            step(C.d0, .getPerms, "/\0", .payload("n0\0")),
            step(C.d0, .getPerms, "/local/domain\0", .payload("n0\0")),
            step(C.d0, .getPerms, "/tool/xenstored\0", .payload("n0\0")),
            step(C.g1, .directory, "/\0", .error(.EACCES)),
        ])
    }

    @Test func nodeOperations() {
        var h = Harness()
        h.run([
            step(C.d0, .write, "/n/a\0with\0nul", .ok),
            step(C.d0, .read, "/n/a\0", .payload("with\0nul")),
            step(C.d0, .read, "/n\0", .payload("")),  // created parent has an empty value
            step(C.d0, .mkdir, "/n/a\0", .ok),  // existing: unchanged
            step(C.d0, .read, "/n/a\0", .payload("with\0nul")),
            step(C.d0, .write, "/n/b\0", .ok),
            step(C.d0, .write, "/n/c\0", .ok),
            step(C.d0, .directory, "/n\0", .payload("a\0b\0c\0")),  // creation order
            step(C.d0, .rm, "/n/b\0", .ok),
            step(C.d0, .directory, "/n\0", .payload("a\0c\0")),
            step(C.d0, .rm, "/n/b\0", .ok),  // missing, parent exists: fine
            step(C.d0, .rm, "/n/x/y\0", .error(.ENOENT)),  // parent missing too
            step(C.d0, .rm, "/n\0", .ok),
            step(C.d0, .read, "/n/a\0", .error(.ENOENT)),
        ])
    }

    @Test func transactions() {
        var h = Harness()
        h.run([
            step(C.d0, .write, "/t/a\0" + "1", .ok),
            step(C.d0, .transactionStart, "\0", .payload("1\0")),
            step(C.d0, .write, "/t/a\0" + "2", tx: 1, .ok),
            step(C.d0, .read, "/t/a\0", tx: 1, .payload("2")),
            step(C.d0, .read, "/t/a\0", .payload("1")),  // isolated until commit
            step(C.d0, .transactionStart, "\0", tx: 1, .error(.EBUSY)),  // no nesting
            step(C.d0, .read, "/t/a\0", tx: 99, .error(.ENOENT)),  // no such transaction
            step(C.obs, .read, "/t/a\0", tx: 1, .error(.ENOENT)),  // ids are per connection
            step(C.obs, .transactionStart, "\0", .payload("1\0")),
            step(C.d0, .transactionEnd, "X\0", tx: 1, .error(.EINVAL)),
            step(C.d0, .transactionEnd, "T\0", tx: 1, .ok),
            step(C.d0, .read, "/t/a\0", .payload("2")),
            step(C.d0, .transactionEnd, "T\0", tx: 1, .error(.ENOENT)),  // gone after END
            step(C.d0, .transactionEnd, "T\0", .error(.ENOENT)),  // tx_id 0

            // Conflict on a node the transaction read: EAGAIN and nothing applied.
            step(C.d0, .transactionStart, "\0", .payload("2\0")),
            step(C.d0, .read, "/t/a\0", tx: 2, .payload("2")),
            step(C.d0, .write, "/t/b\0x", tx: 2, .ok),
            step(C.obs, .write, "/t/a\0" + "3", .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 2, .error(.EAGAIN)),
            step(C.d0, .read, "/t/b\0", .error(.ENOENT)),
            step(C.d0, .read, "/t/a\0", .payload("3")),

            // Conflict on a node the transaction only wrote (stricter than cxenstored). /t/c exists
            // beforehand, so the child list of /t does not change and cannot be the cause.
            step(C.obs, .write, "/t/c\0pre", .ok),
            step(C.d0, .transactionStart, "\0", .payload("3\0")),
            step(C.d0, .write, "/t/c\0tx", tx: 3, .ok),
            step(C.obs, .write, "/t/c\0out", .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 3, .error(.EAGAIN)),
            step(C.d0, .read, "/t/c\0", .payload("out")),

            // Abort leaves the tree unchanged.
            step(C.d0, .transactionStart, "\0", .payload("4\0")),
            step(C.d0, .write, "/t/d\0new", tx: 4, .ok),
            step(C.d0, .rm, "/t/a\0", tx: 4, .ok),
            step(C.d0, .setPerms, "/t\0b0\0", tx: 4, .ok),
            step(C.d0, .transactionEnd, "F\0", tx: 4, .ok),
            step(C.d0, .read, "/t/d\0", .error(.ENOENT)),
            step(C.d0, .read, "/t/a\0", .payload("3")),
            step(C.d0, .getPerms, "/t\0", .payload("n0\0")),
            step(C.d0, .directory, "/t\0", .payload("a\0c\0")),

            // A node removed and recreated inside a transaction.
            step(C.d0, .transactionStart, "\0", .payload("5\0")),
            step(C.d0, .rm, "/t\0", tx: 5, .ok),
            step(C.d0, .read, "/t/a\0", tx: 5, .error(.ENOENT)),
            step(C.d0, .write, "/t/a\0again", tx: 5, .ok),
            step(C.d0, .directory, "/t\0", tx: 5, .payload("a\0")),
            step(C.d0, .directory, "/t\0", .payload("a\0c\0")),
            step(C.d0, .transactionEnd, "T\0", tx: 5, .ok),
            step(C.d0, .directory, "/t\0", .payload("a\0")),
            step(C.d0, .read, "/t/a\0", .payload("again")),
            step(C.d0, .read, "/t/c\0", .error(.ENOENT)),

            // Domain-level requests ignore an open transaction; WATCH ignores any tx_id.
            step(C.d0, .transactionStart, "\0", .payload("6\0")),
            step(C.d0, .getDomainPath, "4\0", tx: 6, .payload("/local/domain/4\0")),
            step(C.d0, .watch, "/t\0tk\0", tx: 1234, .ok),

            // A failed read is an observation too: the node appearing meanwhile is a conflict.
            // (The transaction writes elsewhere, under an existing /u, so only the read conflicts.)
            step(C.d0, .write, "/u/x\0", .ok),
            step(C.d0, .transactionStart, "\0", .payload("7\0")),
            step(C.d0, .read, "/t/none\0", tx: 7, .error(.ENOENT)),
            step(C.d0, .write, "/u/x\0tx", tx: 7, .ok),
            step(C.obs, .write, "/t/none\0y", .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 7, .error(.EAGAIN)),
            step(C.d0, .read, "/u/x\0", .payload("")),
            step(C.obs, .rm, "/t/none\0", .ok),
        ])
    }

    /// cxenstored's transaction model: a transaction copies a node when it first
    /// accesses it, from the store as it is then, and fails only if a node changed
    /// after the transaction accessed it.
    @Test func aTransactionSeesNodesAsTheyAreWhenItFirstTouchesThem() {
        var h = Harness()
        h.run([
            // Issue 15's example: T starts; another connection removes /a/b/c; T then
            // sets /a/b's permissions (its first access). cxenstored commits; so do we.
            step(C.d0, .write, "/a/b/c\0x", .ok),
            step(C.d0, .transactionStart, "\0", .payload("1\0")),
            step(C.obs, .rm, "/a/b/c\0", .ok),
            step(C.d0, .setPerms, "/a/b\0n0\0r5\0", tx: 1, .ok),
            step(C.d0, .directory, "/a/b\0", tx: 1, .payload("")),  // the removal is visible
            step(C.d0, .transactionEnd, "T\0", tx: 1, .ok),
            step(C.d0, .getPerms, "/a/b\0", .payload("n0\0r5\0")),

            // A node changed before the transaction's first read of it reads as changed,
            // and the commit goes through.
            step(C.d0, .write, "/a/v\0old", .ok),
            step(C.d0, .transactionStart, "\0", .payload("2\0")),
            step(C.d0, .write, "/a/w\0mine", tx: 2, .ok),
            step(C.obs, .write, "/a/v\0new", .ok),
            step(C.d0, .read, "/a/v\0", tx: 2, .payload("new")),
            step(C.d0, .read, "/a/w\0", tx: 2, .payload("mine")),  // its own write survives the catch-up
            step(C.d0, .transactionEnd, "T\0", tx: 2, .ok),
            step(C.d0, .read, "/a/w\0", .payload("mine")),

            // Changed after the transaction read it: EAGAIN, as before. A later first
            // access does not rescue a doomed transaction, and it sees its own copies.
            step(C.d0, .transactionStart, "\0", .payload("3\0")),
            step(C.d0, .read, "/a/v\0", tx: 3, .payload("new")),
            step(C.obs, .write, "/a/v\0newer", .ok),
            step(C.obs, .write, "/a/z\0fresh", .ok),
            step(C.d0, .read, "/a/v\0", tx: 3, .payload("new")),
            step(C.d0, .transactionEnd, "T\0", tx: 3, .error(.EAGAIN)),

            // A node the transaction saw absent, created meanwhile: EAGAIN.
            step(C.d0, .transactionStart, "\0", .payload("4\0")),
            step(C.d0, .read, "/a/absent\0", tx: 4, .error(.ENOENT)),
            step(C.obs, .write, "/a/absent\0now", .ok),
            step(C.d0, .write, "/a/other\0x", tx: 4, .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 4, .error(.EAGAIN)),
            step(C.d0, .read, "/a/other\0", .error(.ENOENT)),
        ])
    }

    /// Transactions that only add children under a common ancestor (every domain
    /// builder creates /local/domain/<d>) do not conflict; one that read the ancestor,
    /// or whose ancestor's permissions changed, does.
    @Test func siblingCreationDoesNotConflict() {
        var h = Harness()
        h.run([
            step(C.d0, .write, "/p\0", .ok),
            // Two transactions each create a child of /p; both commit, both children exist.
            step(C.d0, .transactionStart, "\0", .payload("1\0")),
            step(C.obs, .transactionStart, "\0", .payload("1\0")),
            step(C.d0, .write, "/p/one/x\0a", tx: 1, .ok),
            step(C.obs, .write, "/p/two/x\0b", tx: 1, .ok),
            step(C.obs, .transactionEnd, "T\0", tx: 1, .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 1, .ok),
            step(C.d0, .directory, "/p\0", .payload("two\0one\0")),  // in commit order
            step(C.d0, .read, "/p/one/x\0", .payload("a")),
            step(C.d0, .read, "/p/two/x\0", .payload("b")),

            // Removing a child while another is created: both apply.
            step(C.d0, .transactionStart, "\0", .payload("2\0")),
            step(C.d0, .rm, "/p/one\0", tx: 2, .ok),
            step(C.obs, .write, "/p/three\0c", .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 2, .ok),
            step(C.d0, .directory, "/p\0", .payload("two\0three\0")),

            // Removing a node that is not there (a builder clearing stale state) relies
            // only on the parent; a sibling created meanwhile is no conflict…
            step(C.d0, .transactionStart, "\0", .payload("3\0")),
            step(C.d0, .rm, "/p/stale\0", tx: 3, .ok),
            step(C.obs, .write, "/p/eight\0h", .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 3, .ok),
            // …but the removed node itself appearing meanwhile is.
            step(C.d0, .transactionStart, "\0", .payload("4\0")),
            step(C.d0, .rm, "/p/stale\0", tx: 4, .ok),
            step(C.obs, .write, "/p/stale\0i", .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 4, .error(.EAGAIN)),
            step(C.d0, .read, "/p/stale\0", .payload("i")),
            step(C.obs, .rm, "/p/stale\0", .ok),
            step(C.obs, .rm, "/p/eight\0", .ok),

            // A transaction that listed /p sees the new sibling as a conflict.
            step(C.d0, .transactionStart, "\0", .payload("5\0")),
            step(C.d0, .directory, "/p\0", tx: 5, .payload("two\0three\0")),
            step(C.d0, .write, "/p/four\0d", tx: 5, .ok),
            step(C.obs, .write, "/p/five\0e", .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 5, .error(.EAGAIN)),
            step(C.d0, .read, "/p/four\0", .error(.ENOENT)),

            // The ancestor's permissions changed meanwhile: the write was checked
            // against the old ones, so it must not commit.
            step(C.d0, .transactionStart, "\0", .payload("6\0")),
            step(C.d0, .write, "/p/six\0f", tx: 6, .ok),
            step(C.obs, .setPerms, "/p\0n0\0r5\0", .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 6, .error(.EAGAIN)),
            step(C.d0, .read, "/p/six\0", .error(.ENOENT)),

            // The ancestor was removed meanwhile: EAGAIN, nothing recreated.
            step(C.d0, .transactionStart, "\0", .payload("7\0")),
            step(C.d0, .write, "/p/seven\0g", tx: 7, .ok),
            step(C.obs, .rm, "/p\0", .ok),
            step(C.d0, .transactionEnd, "T\0", tx: 7, .error(.EAGAIN)),
            step(C.d0, .read, "/p\0", .error(.ENOENT)),
        ])
    }

    @Test func guestTransactionPermissions() {
        var h = Harness()
        h.run(homes)
        h.run([
            step(C.g2, .transactionStart, "\0", .payload("1\0")),
            step(C.g2, .read, "/local/domain/1/secret\0", tx: 1, .error(.EACCES)),
            step(C.g2, .read, "/local/domain/1/none\0", tx: 1, .error(.EACCES)),
            step(C.g2, .write, "/local/domain/2/k\0v", tx: 1, .ok),
            step(C.g2, .transactionEnd, "T\0", tx: 1, .ok),
            step(C.g2, .read, "/local/domain/2/k\0", .payload("v")),
            step(C.d0, .getPerms, "/local/domain/2/k\0", .payload("n2\0")),
        ])
    }

    @Test func watches() {
        var h = Harness()
        h.run([
            step(C.obs, .watch, "/w\0tok\0", .ok, events: [Event(C.obs, "/w", "tok")]),
            step(C.obs, .watch, "/w\0tok\0", .error(.EEXIST)),
            step(C.obs, .watch, "/w\0tok2\0", .ok, events: [Event(C.obs, "/w", "tok2")]),
            step(C.obs, .unwatch, "/w\0tok2\0", .ok, events: []),
            step(C.obs, .unwatch, "/w\0tok2\0", .error(.ENOENT)),
            step(C.obs, .watch, "/w\0a\0b\0", .error(.EINVAL)),  // depth needs WATCHDEPTH
            step(C.d0, .write, "/w/x\0" + "1", .ok, events: [Event(C.obs, "/w/x", "tok")]),
            step(C.d0, .write, "/wx\0" + "1", .ok, events: []),  // not a child of /w
            step(C.obs, .watch, "/\0all\0", .ok, events: [Event(C.obs, "/", "all")]),
            step(C.d0, .write, "/other\0" + "1", .ok, events: [Event(C.obs, "/other", "all")]),
            step(
                C.d0,
                .write,
                "/w/y\0" + "1",
                .ok,
                events: [Event(C.obs, "/w/y", "tok"), Event(C.obs, "/w/y", "all")]
            ),
            step(C.d0, .mkdir, "/w/y\0", .ok, events: []),  // existing: no change, no event
            step(
                C.d0,
                .setPerms,
                "/w/y\0b0\0",
                .ok,
                events: [Event(C.obs, "/w/y", "tok"), Event(C.obs, "/w/y", "all")]
            ),
            step(C.obs, .unwatch, "/\0all\0", .ok),

            // Events of a transaction fire at commit only, and never if it aborts.
            step(C.d0, .transactionStart, "\0", .payload("1\0")),
            step(C.d0, .write, "/w/z\0" + "1", tx: 1, .ok, events: []),
            step(C.d0, .rm, "/w/y\0", tx: 1, .ok, events: []),
            step(
                C.d0,
                .transactionEnd,
                "T\0",
                tx: 1,
                .ok,
                events: [Event(C.obs, "/w/z", "tok"), Event(C.obs, "/w/y", "tok")]
            ),
            step(C.d0, .transactionStart, "\0", .payload("2\0")),
            step(C.d0, .write, "/w/q\0" + "1", tx: 2, .ok, events: []),
            step(C.d0, .transactionEnd, "F\0", tx: 2, .ok, events: []),

            // Recursive RM: one event for the root (ancestor watches), exact events for descendants.
            step(C.d0, .write, "/w/x/deep\0" + "1", .ok, events: [Event(C.obs, "/w/x/deep", "tok")]),
            step(C.obs, .watch, "/w/x/deep\0d\0", .ok),
            step(C.obs, .watch, "/w/x\0x\0", .ok),
            step(C.obs, .watch, "/w/x/ghost\0g\0", .ok),
            step(
                C.d0,
                .rm,
                "/w/x\0",
                .ok,
                events: [Event(C.obs, "/w/x", "tok"), Event(C.obs, "/w/x", "x"), Event(C.obs, "/w/x/deep", "d")]
            ),
        ])
    }

    @Test func relativeWatchesAndPermissionFiltering() {
        var h = Harness()
        h.run(homes)
        h.run([
            step(C.g1, .watch, "rel\0t\0", .ok, events: [Event(C.g1, "rel", "t")]),
            step(C.d0, .write, "/local/domain/1/rel/sub\0v", .ok, events: [Event(C.g1, "rel/sub", "t")]),
            // The first event is unconditional; later ones need read access.
            step(C.g2, .watch, "/local/domain/1/rel\0spy\0", .ok, events: [Event(C.g2, "/local/domain/1/rel", "spy")]),
            step(C.d0, .write, "/local/domain/1/rel/sub2\0v", .ok, events: [Event(C.g1, "rel/sub2", "t")]),
            // Granting read lets guest 2 hear; revoking still tells it (old permissions count).
            step(
                C.g1,
                .setPerms,
                "rel\0n1\0r2\0",
                .ok,
                events: [Event(C.g1, "rel", "t"), Event(C.g2, "/local/domain/1/rel", "spy")]
            ),
            step(
                C.g1,
                .setPerms,
                "rel\0n1\0",
                .ok,
                events: [Event(C.g1, "rel", "t"), Event(C.g2, "/local/domain/1/rel", "spy")]
            ),
            step(C.g1, .write, "rel\0x", .ok, events: [Event(C.g1, "rel", "t")]),
            // Guest 2 may read the parent of a node it cannot read: it hears of the node.
            step(C.g1, .setPerms, "rel\0n1\0r2\0", .ok),
            step(C.g1, .write, "rel/hidden\0h", .ok),
            step(C.g1, .setPerms, "rel/hidden\0n1\0", .ok),
            step(
                C.g1,
                .write,
                "rel/hidden\0h2",
                .ok,
                events: [Event(C.g1, "rel/hidden", "t"), Event(C.g2, "/local/domain/1/rel/hidden", "spy")]
            ),
        ])
    }

    @Test func resetWatches() {
        var h = Harness()
        h.run([
            step(C.obs, .watch, "/r\0a\0", .ok),
            step(C.obs, .watch, "/r\0b\0", .ok),
            step(C.obs, .transactionStart, "\0", .payload("1\0")),
            step(C.obs, .resetWatches, "\0", .ok),
            step(C.d0, .write, "/r\0v", .ok, events: []),
            step(C.obs, .read, "/r\0", tx: 1, .error(.ENOENT)),
            step(C.obs, .unwatch, "/r\0a\0", .error(.ENOENT)),
            step(C.obs, .watch, "/r\0a\0", .ok, events: [Event(C.obs, "/r", "a")]),
        ])
        #expect(h.engine.watchCount(of: C.obs) == 1)
        #expect(h.engine.openTransactions(of: C.obs).isEmpty)
    }

    @Test func specialWatchesAreForPrivilegedByDefault() {
        var h = Harness()
        h.run([
            step(C.obs, .watch, "@introduceDomain\0i\0", .ok, events: [Event(C.obs, "@introduceDomain", "i")]),
            step(C.obs, .watch, "@releaseDomain\0r\0", .ok, events: [Event(C.obs, "@releaseDomain", "r")]),
            step(C.g1, .watch, "@introduceDomain\0i\0", .ok, events: [Event(C.g1, "@introduceDomain", "i")]),
            step(C.g1, .watch, "@releaseDomain\0r\0", .ok, events: [Event(C.g1, "@releaseDomain", "r")]),
            step(C.d0, .introduce, "5\0" + "100\0" + "9\0", .ok, events: [Event(C.obs, "@introduceDomain", "i")]),
            step(C.g1, .getPerms, "@introduceDomain\0", .error(.EACCES)),
            step(C.g1, .setPerms, "@introduceDomain\0n0\0r1\0", .error(.EACCES)),
            step(C.d0, .getPerms, "@introduceDomain\0", .payload("n0\0")),
            step(C.d0, .setPerms, "@introduceDomain\0n0\0r1\0", .ok),
            step(C.d0, .setPerms, "@releaseDomain\0n0\0r1\0", .ok),
            step(C.g1, .getPerms, "@introduceDomain\0", .payload("n0\0r1\0")),
            step(C.d0, .getPerms, "@nonsense\0", .error(.ENOENT)),
            step(
                C.d0,
                .introduce,
                "6\0" + "100\0" + "9\0",
                .ok,
                events: [Event(C.obs, "@introduceDomain", "i"), Event(C.g1, "@introduceDomain", "i")]
            ),
            step(
                C.d0,
                .release,
                "5\0",
                .ok,
                events: [Event(C.obs, "@releaseDomain", "r"), Event(C.g1, "@releaseDomain", "r")]
            ),
            // Introducing dom0 fires nothing.
            step(C.d0, .introduce, "0\0" + "1\0" + "1\0", .ok, events: []),
        ])
    }
}
