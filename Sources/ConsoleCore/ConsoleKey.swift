//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI

/// Which console of which domain.
public struct ConsoleKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let domid: DomID
    /// 0 for the primary console; 1… for secondary consoles and channels.
    public let devid: Int

    public init(domid: DomID, devid: Int) {
        self.domid = domid
        self.devid = devid
    }

    public static func < (lhs: ConsoleKey, rhs: ConsoleKey) -> Bool {
        (lhs.domid.rawValue, lhs.devid) < (rhs.domid.rawValue, rhs.devid)
    }

    public var description: String { "d\(domid.rawValue)/\(devid)" }
}
