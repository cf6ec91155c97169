//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// The xenstore ring page, `struct xenstore_domain_interface` in
/// `xen/include/public/io/xs_wire.h` (see also `docs/misc/xenstore-ring.txt`).
///
/// ```
///  offset  size  field            written by
///       0  1024  req[]            guest   (requests, guest → xenstored)
///    1024  1024  rsp[]            server  (replies and watch events)
///    2048     4  req_cons         server
///    2052     4  req_prod         guest
///    2056     4  rsp_cons         guest
///    2060     4  rsp_prod         server
///    2064     4  server_features  server
///    2068     4  connection       guest sets RECONNECT, server sets CONNECTED
///    2072     4  error            server
///    2076     4  evtchn_port      Xen (4.21 and later; dom0less / hyperlaunch)
/// ```
///
/// `XENSTORE_RING_SIZE` is 1024 for both directions; `MASK_XENSTORE_IDX` ANDs with 1023.
/// The struct is 2076 bytes in 4.17 headers and 2080 bytes from 4.21.
public enum XenstoreInterface {
    public static let ringSize = 1024
    public static let reqOffset = 0
    public static let rspOffset = 1024
    public static let reqConsOffset = 2048
    public static let reqProdOffset = 2052
    public static let rspConsOffset = 2056
    public static let rspProdOffset = 2060
    public static let serverFeaturesOffset = 2064
    public static let connectionOffset = 2068
    public static let errorOffset = 2072
    /// Present from Xen 4.21 (commit ce1b66e72c); used only when non-zero.
    public static let evtchnPortOffset = 2076

    /// `sizeof(struct xenstore_domain_interface)` in 4.17 headers.
    public static let legacyStructSize = 2076
    /// `sizeof(struct xenstore_domain_interface)` from 4.21.
    public static let structSize = 2080

    /// `XENSTORE_PAYLOAD_MAX`: the largest payload in either direction.
    public static let payloadMax = 4096
    /// `XENSTORE_ABS_PATH_MAX`.
    public static let absolutePathMax = 3072
    /// `XENSTORE_REL_PATH_MAX`.
    public static let relativePathMax = 2048
}

/// Bits of `server_features` (`XENSTORE_SERVER_FEATURE_*`).
@frozen
public struct XenstoreServerFeatures: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `XENSTORE_SERVER_FEATURE_RECONNECTION` (1).
    public static let reconnection = XenstoreServerFeatures(rawValue: 1)
    /// `XENSTORE_SERVER_FEATURE_ERROR` (2).
    public static let error = XenstoreServerFeatures(rawValue: 2)
    /// `XENSTORE_SERVER_FEATURE_WATCHDEPTH` (4).
    public static let watchDepth = XenstoreServerFeatures(rawValue: 4)
    /// `XENSTORE_SERVER_FEATURE_DOMID_ANY` (8), master only.
    public static let domidAny = XenstoreServerFeatures(rawValue: 8)
}

/// Values of the xenstore page's `connection` field.
@frozen
public struct XenstoreConnection: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `XENSTORE_CONNECTED` (0).
    public static let connected = XenstoreConnection(rawValue: 0)
    /// `XENSTORE_RECONNECT` (1): set by the guest to ask the server for a reset.
    public static let reconnect = XenstoreConnection(rawValue: 1)
}

/// Values of the xenstore page's `error` field (`XENSTORE_ERROR_*`).
@frozen
public struct XenstoreRingError: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `XENSTORE_ERROR_NONE` (0).
    public static let none = XenstoreRingError(rawValue: 0)
    /// `XENSTORE_ERROR_COMM` (1): communication problem.
    public static let comm = XenstoreRingError(rawValue: 1)
    /// `XENSTORE_ERROR_RINGIDX` (2): invalid ring index.
    public static let ringIndex = XenstoreRingError(rawValue: 2)
    /// `XENSTORE_ERROR_PROTO` (3): protocol violation (for example an oversize header).
    public static let proto = XenstoreRingError(rawValue: 3)
}
