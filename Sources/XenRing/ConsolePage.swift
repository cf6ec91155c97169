//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenMemory

/// A console ring page: the byte ring plus its `connection` flag.
public typealias ConsoleRing<Memory: SharedMemory> = ByteRing<ConsoleRingLayout, Memory>

/// A xenstore ring page.
public typealias XenstoreRing<Memory: SharedMemory> = ByteRing<XenstoreRingLayout, Memory>

extension ByteRing where Layout == ConsoleRingLayout {
    /// The `connection` byte at offset 3088. Reads with acquire ordering so a
    /// frontend that sees CONNECTED also sees the backend's earlier setup.
    public var connection: ConsoleConnection {
        get { ConsoleConnection(rawValue: memory.load8(at: ConsoleInterface.connectionOffset, ordering: .acquiring)) }
        nonmutating set {
            memory.store8(newValue.rawValue, at: ConsoleInterface.connectionOffset, ordering: .releasing)
        }
    }
}
