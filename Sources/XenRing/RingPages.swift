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

extension ByteRing where Layout == XenstoreRingLayout {
    /// `server_features`: what the server (xenstored) offers the guest.
    public var serverFeatures: XenstoreServerFeatures {
        get {
            XenstoreServerFeatures(
                rawValue: memory.load32(at: XenstoreInterface.serverFeaturesOffset, ordering: .acquiring)
            )
        }
        nonmutating set {
            memory.store32(newValue.rawValue, at: XenstoreInterface.serverFeaturesOffset, ordering: .releasing)
        }
    }

    /// `connection`: the guest asks for a reconnection here; the server answers
    /// by writing CONNECTED after resetting the ring.
    public var connection: XenstoreConnection {
        get {
            XenstoreConnection(rawValue: memory.load32(at: XenstoreInterface.connectionOffset, ordering: .acquiring))
        }
        nonmutating set {
            memory.store32(newValue.rawValue, at: XenstoreInterface.connectionOffset, ordering: .releasing)
        }
    }

    /// `error`: why the server stopped serving this ring.
    public var error: XenstoreRingError {
        get { XenstoreRingError(rawValue: memory.load32(at: XenstoreInterface.errorOffset, ordering: .acquiring)) }
        nonmutating set {
            memory.store32(newValue.rawValue, at: XenstoreInterface.errorOffset, ordering: .releasing)
        }
    }

    /// Empties both directions by zeroing all four indices. Only the server does
    /// this, while answering a reconnection request, before it writes CONNECTED.
    public func resetIndices() {
        for direction in [XenstoreRingLayout.frontToBack, XenstoreRingLayout.backToFront] {
            memory.store32(0, at: direction.consumerOffset, ordering: .relaxed)
            memory.store32(0, at: direction.producerOffset, ordering: .relaxed)
        }
    }
}
