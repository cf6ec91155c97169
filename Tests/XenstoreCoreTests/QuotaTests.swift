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

/// Each cxenstored 4.17 quota, hit from an unprivileged guest with the error it names.
@Suite("Quotas")
struct QuotaTests {
    @Test func defaultsAreCxenstored417() {
        let q = Quotas.cxenstored417
        #expect(
            [q.nodes, q.watches, q.nodeSize, q.transactions, q.permissions, q.transactionNodes, q.pathLength]
                == [1000, 128, 2048, 10, 5, 1024, 2048]
        )
    }

    @Test func nodesPerDomain() {
        var h = Harness()
        h.run(homes)  // guest 1 owns /local/domain/1 and /local/domain/1/secret
        // Spread over directories: one directory of 1000 names would hit the node-size quota first.
        var index = 0
        while h.engine.nodeCount(ownedBy: DomID(1)) < 1000 {
            h.ok(C.g1, .mkdir, index % 50 == 0 ? "d\(index / 50)\0" : "d\(index / 50)/n\(index)\0")
            index += 1
        }
        #expect(h.engine.nodeCount(ownedBy: DomID(1)) == 1000)
        h.run([
            step(C.g1, .write, "one-more\0", .error(.ENOSPC)),
            step(C.g1, .write, "d0/n1\0overwrite", .ok),  // no new node
            step(C.g1, .rm, "d0/n1\0", .ok),
            step(C.g1, .write, "a/b\0", .error(.ENOSPC)),  // two new nodes, room for one
            step(C.g1, .write, "a\0", .ok),
            step(C.d0, .write, "/local/domain/1/dom0-made\0", .ok),  // privileged: not limited
        ])
    }

    @Test func watchesPerDomainAllow129() {
        var h = Harness()
        for index in 0..<129 {
            h.ok(C.g1, .watch, "/w\(index)\0t\0")
        }
        h.run([step(C.g1, .watch, "/w-last\0t\0", .error(.E2BIG))])
        for index in 0..<200 {
            h.ok(C.obs, .watch, "/w\(index)\0t\0")  // privileged: not limited
        }
    }

    @Test func nodeSize() {
        var h = Harness()
        h.run(homes)
        // 24-byte header + 8 for one permission + value: 2015 value bytes fit, 2016 do not.
        h.run([
            step(C.g1, .write, "big\0" + String(repeating: "x", count: 2015), .ok),
            step(C.g1, .write, "big\0" + String(repeating: "x", count: 2016), .error(.ENOSPC)),
            step(C.g1, .read, "big\0", .payload(String(repeating: "x", count: 2015))),
            // Extra permissions take 8 bytes each.
            step(C.g1, .setPerms, "big\0n1\0r2\0", .error(.ENOSPC)),
            step(C.d0, .write, "/local/domain/1/big\0" + String(repeating: "y", count: 3000), .ok),
        ])
    }

    @Test func transactionsAllow11() {
        var h = Harness()
        for expected in 1...11 {
            h.run([step(C.g1, .transactionStart, "\0", .payload("\(expected)\0"))])
        }
        h.run([
            step(C.g1, .transactionStart, "\0", .error(.ENOSPC)),
            step(C.g1, .transactionEnd, "F\0", tx: 3, .ok),
            step(C.g1, .transactionStart, "\0", .payload("12\0")),
        ])
        for _ in 1...20 {
            _ = h.begin(C.obs)  // privileged: not limited
        }
        #expect(h.engine.openTransactions(of: C.obs).count == 20)
    }

    @Test func permissionsPerNode() {
        var h = Harness()
        h.run(homes)
        h.run([
            step(C.g1, .write, "p\0", .ok),
            step(C.g1, .setPerms, "p\0n1\0r2\0r3\0r4\0r5\0", .ok),
            step(C.g1, .setPerms, "p\0n1\0r2\0r3\0r4\0r5\0r6\0", .error(.ENOSPC)),
            step(C.d0, .setPerms, "/local/domain/1/p\0n1\0r2\0r3\0r4\0r5\0r6\0r7\0", .ok),
        ])
    }

    @Test func nodesPerTransaction() {
        var h = Harness(quotas: Quotas(transactionNodes: 4))
        h.run(homes)
        h.run([
            step(C.g1, .transactionStart, "\0", .payload("1\0")),
            step(C.g1, .read, "secret\0", tx: 1, .payload("s")),  // touches 1
            step(C.g1, .write, "a\0", tx: 1, .ok),  // touches a and its parent: 3
            step(C.g1, .read, "a\0", tx: 1, .payload("")),  // already touched
            step(C.g1, .read, "missing\0", tx: 1, .error(.ENOENT)),  // 4
            step(C.g1, .write, "b\0", tx: 1, .error(.ENOSPC)),  // would be 5
            step(C.g1, .transactionEnd, "T\0", tx: 1, .ok),
            step(C.g1, .read, "a\0", .payload("")),
            step(C.g1, .read, "b\0", .error(.ENOENT)),
        ])
    }

    /// Nodes are counted again when a transaction commits: parallel transactions
    /// of one domain cannot each fill the quota (reference §4.9; today 11 x 900).
    @Test func nodesAreCountedAtCommit() {
        var h = Harness()
        h.run(homes)
        let owned = h.engine.nodeCount(ownedBy: DomID(1))
        for tx in UInt32(1)...11 {
            h.run([step(C.g1, .transactionStart, "\0", .payload("\(tx)\0"))])
            for index in 0..<900 {
                // 18 directories of 50: no directory's record outgrows the node-size quota.
                h.ok(C.g1, .mkdir, "t\(tx)d\(index / 50)/n\(index)\0", tx: tx)
            }
        }
        // The first commit fits: 900 new nodes (plus directories) on top of `owned`.
        let firstFits = owned + 900 + 18 <= 1000
        h.run([step(C.g1, .transactionEnd, "T\0", tx: 1, firstFits ? .ok : .error(.ENOSPC))])
        for tx in UInt32(2)...11 {
            h.run([step(C.g1, .transactionEnd, "T\0", tx: tx, .error(.ENOSPC))])
        }
        #expect(h.engine.nodeCount(ownedBy: DomID(1)) <= 1000)
        // A committed transaction that only removes nodes is never refused.
        h.run([
            step(C.g1, .transactionStart, "\0", .payload("12\0")),
            step(C.g1, .rm, "t1d0\0", tx: 12, .ok),
            step(C.g1, .transactionEnd, "T\0", tx: 12, .ok),
        ])
    }

    @Test func pathLength() {
        var h = Harness()
        let inHome = String(repeating: "p", count: 2048)
        let elsewhere = "/" + String(repeating: "q", count: 2047)
        h.run([
            step(C.g1, .read, "/local/domain/1/\(inHome)\0", .error(.EACCES)),  // valid; n0 home missing
            step(C.g1, .read, "/local/domain/1/\(inHome)p\0", .error(.EINVAL)),
            step(C.g1, .read, "\(inHome)p\0", .error(.EINVAL)),  // relative, same rule
            step(C.g1, .read, "\(elsewhere)\0", .error(.EACCES)),
            step(C.g1, .read, "\(elsewhere)q\0", .error(.EINVAL)),
            // Privileged connections too, for every operation (cxenstored's is_valid_nodename).
            step(C.d0, .read, "\(elsewhere)q\0", .error(.EINVAL)),
            step(C.d0, .write, "\(elsewhere)q\0v", .error(.EINVAL)),
            step(C.d0, .mkdir, "\(elsewhere)q\0", .error(.EINVAL)),
            step(C.d0, .write, "/local/domain/7/\(inHome)\0v", .ok),  // a domain's prefix does not count
            step(C.d0, .read, "/local/domain/7/\(inHome)\0", .payload("v")),
            step(C.d0, .write, "/local/domain/7/\(inHome)p\0v", .error(.EINVAL)),
            step(C.d0, .read, "/" + String(repeating: "r", count: 3072) + "\0", .error(.EINVAL)),
            step(C.g1, .watch, "@" + String(repeating: "s", count: 2048) + "\0t\0", .error(.EINVAL)),
        ])
    }

    @Test func setQuotaChangesLimits() {
        var h = Harness()
        h.run(homes)
        h.run([
            step(C.d0, .introduce, "1\0" + "1\0" + "1\0", .ok),
            step(C.d0, .setQuota, "1\0nodes\0" + "3\0", .ok),
            step(C.d0, .getQuota, "1\0nodes\0", .payload("3\0")),
            step(C.d0, .getQuota, "nodes\0", .payload("1000\0")),
            step(C.g1, .write, "x\0", .ok),
            step(C.g1, .write, "y\0", .error(.ENOSPC)),
            step(C.d0, .setQuota, "1\0nodes\0" + "0\0", .ok),  // 0 disables the check
            step(C.g1, .write, "y\0", .ok),
            step(C.d0, .setQuota, "watches\0" + "1\0", .ok),
            step(C.g2, .watch, "/a\0t\0", .ok),
            step(C.g2, .watch, "/b\0t\0", .ok),  // "more than 1 already" is false
            step(C.g2, .watch, "/c\0t\0", .error(.E2BIG)),
        ])
    }
}
