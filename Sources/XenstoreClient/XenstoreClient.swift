//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import NIOConcurrencyHelpers
import XenABI
import XenstoreWire

#if canImport(Glibc)
import Glibc
#endif

/// Why a xenstore request failed.
public enum XenstoreClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The server answered with an error name from the fixed table.
    case server(XenstoreError)
    /// The connection closed before the reply came.
    case connectionClosed
    /// The request would exceed `XENSTORE_PAYLOAD_MAX` (libxenstore's E2BIG).
    case payloadTooLarge
    /// The server sent something the protocol does not allow.
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .server(let error): error.name
        case .connectionClosed: "connection to xenstored closed"
        case .payloadTooLarge: "E2BIG"
        case .protocolViolation(let what): "protocol violation: \(what)"
        }
    }
}

/// A transaction id (`0` is "no transaction").
public struct XenstoreTransaction: Hashable, Sendable {
    public let id: UInt32
    public init(id: UInt32) { self.id = id }
    public static let none = XenstoreTransaction(id: 0)
}

/// A watch event: the path that changed (relative if the watch was) and the token.
public struct XenstoreWatchEvent: Hashable, Sendable {
    public let path: String
    public let token: String

    public init(path: String, token: String) {
        self.path = path
        self.token = token
    }
}

/// An async/await xenstore client over any ``XenstoreClientTransport``.
///
/// Requests carry unique req_ids and are matched to replies by them, so many tasks
/// may share one client. Watch events arrive through ``watch(_:token:)``'s
/// `AsyncStream`. ``transaction(_:)`` retries the body on EAGAIN.
public final class XenstoreClient: Sendable {
    private let state: StateBox
    /// Makes a new transport after the connection dropped (``connect(socketPath:reconnecting:)``).
    private let reconnect: (@Sendable () -> any XenstoreClientTransport)?

    private var transport: any XenstoreClientTransport { state.withLock { $0.transport } }

    /// The client's state behind a pthread mutex (NIOLock). ThreadSanitizer sees
    /// pthread locking; it does not see Synchronization.Mutex, whose futex calls
    /// live in the uninstrumented runtime, and reported this lock's own critical
    /// sections as racing.
    private final class StateBox: @unchecked Sendable {
        private let lock = NIOLock()
        private var state: State

        init(_ state: consuming State) { self.state = state }

        func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
            try lock.withLock { try body(&state) }
        }
    }

    fileprivate struct State: ~Copyable {
        var transport: any XenstoreClientTransport
        /// Bumped on each reconnection: a closed notice from an old transport is stale.
        var generation = 0
        /// ``close()`` was called: no reconnection.
        var closing = false
        var reconnecting = false
        var nextRequestID: UInt32 = 1
        var pending: [UInt32: CheckedContinuation<XenstoreMessage, any Error>] = [:]
        /// Requests sent by ``batch(_:transaction:)``: their collector and position.
        var batched: [UInt32: (BatchCollector, Int)] = [:]
        var watchers: [String: AsyncStream<XenstoreWatchEvent>.Continuation] = [:]
        /// Each watch's path by token, to set it again after a reconnection.
        var watchPaths: [String: String] = [:]
        var decoder = XenstoreDecoder()
        var closed = false
    }

    /// Connects over `transport` and starts reading.
    public convenience init(transport: any XenstoreClientTransport) async throws {
        try await self.init(transport: transport, reconnect: nil)
    }

    private init(
        transport: any XenstoreClientTransport,
        reconnect: (@Sendable () -> any XenstoreClientTransport)?
    ) async throws {
        self.reconnect = reconnect
        state = StateBox(State(transport: transport))
        try await transport.start(Sink(client: self, generation: 0))
    }

    /// Connects to xenstored's Unix socket: `socketPath` if given, else where
    /// libxenstore looks — `$XENSTORED_PATH`, else `$XENSTORED_RUNDIR/socket`, else
    /// `/var/run/xenstored/socket`.
    ///
    /// - Parameter reconnecting: for a daemon: if the connection drops (xenstored
    ///   restarted), requests in flight fail with `.connectionClosed`, and the
    ///   client connects again until it succeeds, then sets every watch again —
    ///   each stream gets the immediate event of a new watch, its cue to re-read.
    public static func connect(socketPath: String? = nil, reconnecting: Bool = false) async throws -> XenstoreClient {
        let path = socketPath ?? defaultSocketPath()
        let reconnect: (@Sendable () -> any XenstoreClientTransport)? =
            reconnecting ? { @Sendable () -> any XenstoreClientTransport in SocketClientTransport(path: path) } : nil
        return try await XenstoreClient(transport: SocketClientTransport(path: path), reconnect: reconnect)
    }

    /// The socket path libxenstore would use (`xs_daemon_socket()`).
    public static func defaultSocketPath(environment: [String: String] = currentEnvironment()) -> String {
        if let path = environment["XENSTORED_PATH"], !path.isEmpty { return path }
        let runDirectory = environment["XENSTORED_RUNDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/var/run/xenstored"
        return runDirectory + "/socket"
    }

    public static func currentEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }

    /// The executor that owns this client's connection. Latency-sensitive callers
    /// can run under `withTaskExecutorPreference(client.preferredExecutor)` so a
    /// request and its reply never change threads.
    public var preferredExecutor: (any TaskExecutor)? { transport.preferredExecutor }

    /// Closes the connection; outstanding requests fail with `.connectionClosed`.
    public func close() {
        state.withLock { $0.closing = true }
        transport.close()
    }

    // MARK: - Requests

    /// Sends one request and returns the reply payload, or throws the server's error.
    public func request(
        _ type: XenstoreMessageType,
        _ payload: [UInt8],
        transaction: XenstoreTransaction = .none
    ) async throws(XenstoreClientError) -> [UInt8] {
        guard payload.count <= XenstoreInterface.payloadMax else { throw .payloadTooLarge }
        let reply: XenstoreMessage
        do {
            reply = try await withCheckedThrowingContinuation { continuation in
                let bytes: [UInt8]? = state.withLock { state in
                    guard !state.closed else { return nil }
                    let id = state.nextRequestID
                    state.nextRequestID = id == UInt32.max ? 1 : id + 1
                    state.pending[id] = continuation
                    return XenstoreMessage(type: type, reqID: id, txID: transaction.id, payload: payload).encoded()
                }
                guard let bytes else {
                    continuation.resume(throwing: XenstoreClientError.connectionClosed)
                    return
                }
                transport.send(bytes)
            }
        } catch let error as XenstoreClientError {
            throw error
        } catch {
            throw .connectionClosed
        }
        if reply.type == .error {
            throw .server(XenstoreError(wireName: Self.string(reply.payload)))
        }
        guard reply.type == type else {
            throw .protocolViolation("reply type \(reply.type) to a \(type) request")
        }
        return reply.payload
    }

    /// One request of a ``batch(_:transaction:)``.
    public struct BatchRequest: Sendable {
        public var type: XenstoreMessageType
        public var payload: [UInt8]

        public init(_ type: XenstoreMessageType, _ payload: [UInt8]) {
            self.type = type
            self.payload = payload
        }

        public static func write(_ path: String, _ value: String) -> BatchRequest {
            BatchRequest(.write, XenstorePayload.string(path) + Array(value.utf8))
        }
        public static func mkdir(_ path: String) -> BatchRequest { BatchRequest(.mkdir, XenstorePayload.string(path)) }
        public static func remove(_ path: String) -> BatchRequest { BatchRequest(.rm, XenstorePayload.string(path)) }
        public static func setPermissions(_ path: String, _ permissions: XenstorePermissions) -> BatchRequest {
            BatchRequest(.setPerms, XenstorePayload.string(path) + permissions.wire)
        }
    }

    /// Sends every request at once, in order, and waits for all the replies: one
    /// round trip instead of one per request. xenstored answers a connection's
    /// requests in the order they arrive, so later requests see earlier ones'
    /// effects, exactly as if they had been sent one by one. Each result is the
    /// reply payload or that request's error.
    public func batch(
        _ requests: [BatchRequest],
        transaction: XenstoreTransaction = .none
    ) async throws(XenstoreClientError) -> [Result<[UInt8], XenstoreClientError>] {
        guard !requests.isEmpty else { return [] }
        guard requests.allSatisfy({ $0.payload.count <= XenstoreInterface.payloadMax }) else {
            throw .payloadTooLarge
        }
        let replies: [XenstoreMessage]
        do {
            replies = try await withCheckedThrowingContinuation { continuation in
                let collector = BatchCollector(count: requests.count, continuation: continuation)
                let bytes: [UInt8]? = state.withLock { state in
                    guard !state.closed else { return nil }
                    var bytes: [UInt8] = []
                    for (index, request) in requests.enumerated() {
                        let id = state.nextRequestID
                        state.nextRequestID = id == UInt32.max ? 1 : id + 1
                        state.batched[id] = (collector, index)
                        bytes += XenstoreMessage(
                            type: request.type,
                            reqID: id,
                            txID: transaction.id,
                            payload: request.payload
                        ).encoded()
                    }
                    return bytes
                }
                guard let bytes else {
                    continuation.resume(throwing: XenstoreClientError.connectionClosed)
                    return
                }
                transport.send(bytes)
            }
        } catch let error as XenstoreClientError {
            throw error
        } catch {
            throw .connectionClosed
        }
        return zip(requests, replies).map { request, reply in
            if reply.type == .error { return .failure(.server(XenstoreError(wireName: Self.string(reply.payload)))) }
            guard reply.type == request.type else {
                return .failure(.protocolViolation("reply type \(reply.type) to a \(request.type) request"))
            }
            return .success(reply.payload)
        }
    }

    public func read(
        _ path: String,
        transaction: XenstoreTransaction = .none
    ) async throws(XenstoreClientError) -> [UInt8] {
        try await request(.read, XenstorePayload.string(path), transaction: transaction)
    }

    public func readString(
        _ path: String,
        transaction: XenstoreTransaction = .none
    ) async throws(XenstoreClientError)
        -> String
    {
        String(decoding: try await read(path, transaction: transaction), as: UTF8.self)
    }

    /// Whether `path` can be read (ENOENT and EACCES both mean no, as `xenstore-exists`).
    public func exists(
        _ path: String,
        transaction: XenstoreTransaction = .none
    ) async throws(XenstoreClientError) -> Bool {
        do {
            _ = try await read(path, transaction: transaction)
            return true
        } catch .server(.ENOENT), .server(.EACCES) {
            return false
        }
    }

    public func write(
        _ path: String,
        _ value: [UInt8],
        transaction: XenstoreTransaction = .none
    ) async throws(XenstoreClientError) {
        _ = try await request(.write, XenstorePayload.string(path) + value, transaction: transaction)
    }

    public func write(
        _ path: String,
        _ value: String,
        transaction: XenstoreTransaction = .none
    ) async throws(XenstoreClientError) {
        try await write(path, Array(value.utf8), transaction: transaction)
    }

    public func mkdir(_ path: String, transaction: XenstoreTransaction = .none) async throws(XenstoreClientError) {
        _ = try await request(.mkdir, XenstorePayload.string(path), transaction: transaction)
    }

    public func remove(_ path: String, transaction: XenstoreTransaction = .none) async throws(XenstoreClientError) {
        _ = try await request(.rm, XenstorePayload.string(path), transaction: transaction)
    }

    /// The children of `path`, in creation order.
    public func directory(
        _ path: String,
        transaction: XenstoreTransaction = .none
    ) async throws(XenstoreClientError)
        -> [String]
    {
        do {
            return Self.strings(try await request(.directory, XenstorePayload.string(path), transaction: transaction))
        } catch .server(.E2BIG) {
            // More names than one reply holds (/local/domain past ~800 guests): read
            // the listing in DIRECTORY_PART chunks, as libxenstore does.
            return try await directoryInParts(path, transaction: transaction)
        }
    }

    /// The whole listing through DIRECTORY_PART, restarted when the node's
    /// generation changes between chunks (a child came or went mid-listing).
    func directoryInParts(
        _ path: String,
        transaction: XenstoreTransaction
    ) async throws(XenstoreClientError) -> [String] {
        for _ in 0..<Self.directoryPartAttempts {
            var listing: [UInt8] = []
            var generation: [UInt8]?
            var restarted = false
            while true {
                let reply = try await request(
                    .directoryPart,
                    XenstorePayload.strings([path, String(listing.count)]),
                    transaction: transaction
                )
                guard let end = reply.firstIndex(of: 0) else {
                    throw .protocolViolation("DIRECTORY_PART reply without a generation")
                }
                let chunkGeneration = Array(reply[..<end])
                if generation == nil { generation = chunkGeneration }
                guard chunkGeneration == generation else {
                    restarted = true
                    break
                }
                let chunk = reply[(end + 1)...]
                // The last chunk ends with one extra NUL: a lone NUL, or two in a row.
                if chunk == [0] { break }
                if chunk.count >= 2, chunk.suffix(2).elementsEqual([0, 0]) {
                    listing += chunk.dropLast()
                    break
                }
                guard chunk.last == 0 else { throw .protocolViolation("DIRECTORY_PART chunk cut inside a name") }
                listing += chunk
            }
            if !restarted { return Self.strings(listing) }
        }
        throw .server(.EAGAIN)
    }

    /// Restarts of a DIRECTORY_PART listing before giving up with EAGAIN.
    static let directoryPartAttempts = 16

    public func permissions(
        _ path: String,
        transaction: XenstoreTransaction = .none
    ) async throws(XenstoreClientError)
        -> XenstorePermissions
    {
        let payload = try await request(.getPerms, XenstorePayload.string(path), transaction: transaction)
        guard let permissions = XenstorePermissions(wire: payload) else {
            throw .protocolViolation("malformed permissions")
        }
        return permissions
    }

    public func setPermissions(
        _ path: String,
        _ permissions: XenstorePermissions,
        transaction: XenstoreTransaction = .none
    ) async throws(XenstoreClientError) {
        _ = try await request(.setPerms, XenstorePayload.string(path) + permissions.wire, transaction: transaction)
    }

    public func getDomainPath(_ domid: DomID) async throws(XenstoreClientError) -> String {
        Self.string(try await request(.getDomainPath, XenstorePayload.string(String(domid.rawValue))))
    }

    public func introduce(_ domid: DomID, frame: UInt64, port: EvtchnPort) async throws(XenstoreClientError) {
        _ = try await request(
            .introduce,
            XenstorePayload.strings(["\(domid.rawValue)", "\(frame)", "\(port.rawValue)"])
        )
    }

    public func release(_ domid: DomID) async throws(XenstoreClientError) {
        _ = try await request(.release, XenstorePayload.string(String(domid.rawValue)))
    }

    public func isDomainIntroduced(_ domid: DomID) async throws(XenstoreClientError) -> Bool {
        Self.string(try await request(.isDomainIntroduced, XenstorePayload.string(String(domid.rawValue)))) == "T"
    }

    // MARK: - Transactions

    public func startTransaction() async throws(XenstoreClientError) -> XenstoreTransaction {
        let reply = Self.string(try await request(.transactionStart, [0]))
        guard let id = UInt32(reply), id != 0 else { throw .protocolViolation("transaction id \(reply)") }
        return XenstoreTransaction(id: id)
    }

    /// Commits (`commit: true`) or aborts a transaction. A conflicting commit throws
    /// `.server(.EAGAIN)` and applied nothing.
    public func endTransaction(_ transaction: XenstoreTransaction, commit: Bool) async throws(XenstoreClientError) {
        _ = try await request(.transactionEnd, commit ? Array("T\0".utf8) : Array("F\0".utf8), transaction: transaction)
    }

    /// Runs `body` in a transaction and commits it, starting over (after a short
    /// random back-off) while the commit reports EAGAIN, at most `maxAttempts` times. If `body` throws, the
    /// transaction is aborted and the error rethrown.
    public func transaction<T: Sendable>(
        maxAttempts: Int = 64,
        _ body: (XenstoreTransaction) async throws -> T
    ) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            let transaction = try await startTransaction()
            let result: T
            do {
                result = try await body(transaction)
            } catch {
                try? await endTransaction(transaction, commit: false)
                throw error
            }
            do {
                try await endTransaction(transaction, commit: true)
                return result
            } catch {
                // (A `catch .server(.EAGAIN) where …` clause crashes Swift 6.3's SILGen.)
                guard error == .server(.EAGAIN) && attempt < maxAttempts else { throw error }
                // Randomised exponential back-off: without it, clients that retry in
                // lock step can starve one of them forever.
                let ceiling = 50 << min(attempt, 8)  // µs: 100 … 12 800
                try? await Task.sleep(for: .microseconds(Int.random(in: 0...ceiling)))
            }
        }
    }

    // MARK: - Watches

    /// Sets a watch and returns its events, starting with the immediate one the
    /// server sends for the path itself. The stream ends when the connection closes
    /// or ``unwatch(_:token:)`` is called.
    public func watch(
        _ path: String,
        token: String
    ) async throws(XenstoreClientError) -> AsyncStream<XenstoreWatchEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: XenstoreWatchEvent.self, bufferingPolicy: .unbounded)
        state.withLock {
            $0.watchers[token] = continuation
            $0.watchPaths[token] = path
        }
        do {
            _ = try await request(.watch, XenstorePayload.strings([path, token]))
        } catch {
            _ = state.withLock {
                $0.watchPaths[token] = nil
                return $0.watchers.removeValue(forKey: token)
            }
            continuation.finish()
            throw error
        }
        return stream
    }

    public func unwatch(_ path: String, token: String) async throws(XenstoreClientError) {
        _ = try await request(.unwatch, XenstorePayload.strings([path, token]))
        state.withLock {
            $0.watchPaths[token] = nil
            return $0.watchers.removeValue(forKey: token)
        }?.finish()
    }

    // MARK: - Receiving

    private struct Sink: XenstoreTransportSink {
        let client: XenstoreClient
        let generation: Int
        func received(_ bytes: [UInt8]) { client.received(bytes) }
        func closed(_ error: (any Error)?) { client.closed(generation: generation) }
    }

    private func received(_ bytes: [UInt8]) {
        var replies: [(CheckedContinuation<XenstoreMessage, any Error>, XenstoreMessage)] = []
        var batches: [BatchCollector] = []
        var events: [(AsyncStream<XenstoreWatchEvent>.Continuation, XenstoreWatchEvent)] = []
        let failed: Bool = state.withLock { state in
            for message in state.decoder.feed(bytes) {
                if message.type == .watchEvent {
                    let parts = Self.strings(message.payload)
                    guard parts.count >= 2, let watcher = state.watchers[parts[1]] else { continue }
                    events.append((watcher, XenstoreWatchEvent(path: parts[0], token: parts[1])))
                } else if let continuation = state.pending.removeValue(forKey: message.reqID) {
                    replies.append((continuation, message))
                } else if let (collector, index) = state.batched.removeValue(forKey: message.reqID),
                    collector.record(message, at: index)
                {
                    batches.append(collector)
                }
            }
            if case .failed = state.decoder.state { return true }
            return false
        }
        // Resume outside the lock: continuations may run code that calls back in.
        for (continuation, message) in replies { continuation.resume(returning: message) }
        for collector in batches { collector.finish() }
        for (watcher, event) in events { watcher.yield(event) }
        if failed { transport.close() }
    }

    private func closed(generation: Int) {
        let retry = reconnect
        let (pending, batches, watchers, reconnecting) = state.withLock { state in
            guard generation == state.generation else {
                return (
                    [CheckedContinuation<XenstoreMessage, any Error>](), [BatchCollector](),
                    [AsyncStream<XenstoreWatchEvent>.Continuation](), false
                )
            }
            let reconnecting = retry != nil && !state.closing
            state.closed = true
            state.reconnecting = reconnecting
            state.decoder = XenstoreDecoder()
            defer {
                state.pending.removeAll()
                state.batched.removeAll()
                if !reconnecting {
                    state.watchers.removeAll()
                    state.watchPaths.removeAll()
                }
            }
            // One collector per batch, however many of its requests were unanswered.
            var collectors: [ObjectIdentifier: BatchCollector] = [:]
            for (collector, _) in state.batched.values { collectors[ObjectIdentifier(collector)] = collector }
            return (
                Array(state.pending.values), Array(collectors.values),
                reconnecting ? [] : Array(state.watchers.values), reconnecting
            )
        }
        for continuation in pending { continuation.resume(throwing: XenstoreClientError.connectionClosed) }
        for collector in batches { collector.fail() }
        for watcher in watchers { watcher.finish() }
        if reconnecting, let retry { Task { await self.reconnect(using: retry) } }
    }

    /// Connects again (every 50 ms at first, backing off to 1 s) until it works or
    /// ``close()`` is called, then sets every watch again.
    private func reconnect(using makeTransport: @Sendable () -> any XenstoreClientTransport) async {
        var delay: Duration = .milliseconds(50)
        while true {
            if state.withLock({ $0.closing }) {
                finishWatchers()
                return
            }
            let transport = makeTransport()
            let generation = state.withLock { state in
                state.generation += 1
                return state.generation
            }
            do {
                try await transport.start(Sink(client: self, generation: generation))
                let paths = state.withLock { state in
                    state.transport = transport
                    state.closed = false
                    state.reconnecting = false
                    return state.watchPaths
                }
                for (token, path) in paths.sorted(by: { $0.key < $1.key }) {
                    _ = try? await request(.watch, XenstorePayload.strings([path, token]))
                }
                return
            } catch {
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(1))
            }
        }
    }

    private func finishWatchers() {
        let watchers = state.withLock { state in
            defer {
                state.watchers.removeAll()
                state.watchPaths.removeAll()
            }
            return Array(state.watchers.values)
        }
        for watcher in watchers { watcher.finish() }
    }

    /// Whether the client is between connections (it reconnects by itself).
    public var isReconnecting: Bool { state.withLock { $0.reconnecting } }

    // MARK: - Payload helpers

    /// A NUL-terminated (or unterminated) string payload.
    static func string(_ payload: [UInt8]) -> String {
        String(decoding: payload.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// NUL-separated strings; a trailing NUL ends the list.
    static func strings(_ payload: [UInt8]) -> [String] {
        guard !payload.isEmpty else { return [] }
        var parts = payload.split(separator: 0, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        if payload.last == 0 { parts.removeLast() }
        return parts
    }
}

/// Gathers a batch's replies; touched only under the client's state lock, resumed
/// outside it.
final class BatchCollector: @unchecked Sendable {
    private var messages: [XenstoreMessage?]
    private var remaining: Int
    private let continuation: CheckedContinuation<[XenstoreMessage], any Error>

    init(count: Int, continuation: CheckedContinuation<[XenstoreMessage], any Error>) {
        messages = Array(repeating: nil, count: count)
        remaining = count
        self.continuation = continuation
    }

    /// Records a reply; true when it was the last one.
    func record(_ message: XenstoreMessage, at index: Int) -> Bool {
        guard messages[index] == nil else { return false }
        messages[index] = message
        remaining -= 1
        return remaining == 0
    }

    func finish() { continuation.resume(returning: messages.map { $0! }) }

    func fail() { continuation.resume(throwing: XenstoreClientError.connectionClosed) }
}
