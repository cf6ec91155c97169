//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// The PV console ring page, `struct xencons_interface` in
/// `xen/include/public/io/console.h`.
///
/// ```
///  offset  size  field        written by
///       0  1024  in[]         backend  (keyboard input, backend → guest)
///    1024  2048  out[]        guest    (console output, guest → backend)
///    3072     4  in_cons      guest
///    3076     4  in_prod      backend
///    3080     4  out_cons     backend
///    3084     4  out_prod     guest
///    3088     1  connection   backend / toolstack   (Xen 4.21 and later)
/// ```
///
/// Indices are free-running `uint32_t` (`XENCONS_RING_IDX`) that wrap modulo 2^32;
/// `MASK_XENCONS_IDX` ANDs an index with `sizeof(ring) - 1`. A ring is valid only
/// while `prod - cons <= sizeof(ring)` in 32-bit unsigned arithmetic.
///
/// Headers before 4.21 (Debian's 4.17 among them) end the struct at `out_prod`,
/// so their `sizeof(struct xencons_interface)` is 3088 — exactly the offset of
/// `connection`. Old guests therefore never touch the flag byte.
public enum ConsoleInterface {
    /// `in[1024]`: backend → guest.
    public static let inOffset = 0
    public static let inSize = 1024
    /// `out[2048]`: guest → backend.
    public static let outOffset = 1024
    public static let outSize = 2048

    public static let inConsOffset = 3072
    public static let inProdOffset = 3076
    public static let outConsOffset = 3080
    public static let outProdOffset = 3084

    /// The `connection` byte (a `uint8_t`), added by xen.git commit ddc2dd12644b (4.21).
    public static let connectionOffset = 3088

    /// `sizeof(struct xencons_interface)` in headers that predate `connection`.
    public static let legacyStructSize = 3088
    /// `sizeof(struct xencons_interface)` with `connection` (tail-padded to 4).
    public static let structSize = 3092
}

/// Values of the console page's `connection` byte (`XENCONSOLE_CONNECTED` /
/// `XENCONSOLE_DISCONNECTED` in Xen 4.21's `console.h`).
///
/// The encoding is inverted on purpose: a zeroed page reads as connected, so
/// toolstacks and backends that predate the flag behave as before.
@frozen
public struct ConsoleConnection: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `XENCONSOLE_CONNECTED` = 0: a backend services the ring.
    public static let connected = ConsoleConnection(rawValue: 0)
    /// `XENCONSOLE_DISCONNECTED` = 1: nobody services the ring; a new frontend
    /// should not wait on it.
    public static let disconnected = ConsoleConnection(rawValue: 1)

    /// Linux 7.1 treats only the value 1 as disconnected; anything else (including
    /// garbage a guest scribbled there) reads as connected.
    @inlinable public var isDisconnected: Bool { self == .disconnected }

    public var description: String {
        switch rawValue {
        case 0: "connected"
        case 1: "disconnected"
        default: "unknown(\(rawValue))"
        }
    }
}
