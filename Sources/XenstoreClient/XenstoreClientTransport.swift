//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// Receives what a transport reads, in order.
public protocol XenstoreTransportSink: Sendable {
    /// Bytes from the server, split anywhere.
    func received(_ bytes: [UInt8])
    /// The transport closed; `error` says why, nil for an orderly close.
    func closed(_ error: (any Error)?)
}

/// How a ``XenstoreClient`` reaches xenstored: a Unix socket (dom0 tools) or a
/// guest's shared ring. The client's request matching, watches and transactions
/// are the same over both.
public protocol XenstoreClientTransport: Sendable {
    /// Starts reading; every byte received goes to `sink`.
    func start(_ sink: any XenstoreTransportSink) async throws
    /// Sends bytes; order is preserved. Never blocks the caller.
    func send(_ bytes: [UInt8])
    /// Closes the transport; the sink's `closed` follows.
    func close()
    /// The executor on which the transport delivers bytes, if it has one. Tasks that
    /// prefer it avoid a thread hand-off per reply.
    var preferredExecutor: (any TaskExecutor)? { get }
}
