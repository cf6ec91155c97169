//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Logging
import ServiceLifecycle
import UnixSignals

/// consoled as a swift-service-lifecycle `Service`, as xenstored is: starts the
/// daemon, reopens every log on SIGHUP (logrotate), and on graceful shutdown
/// (the group's SIGTERM or SIGINT) stops it in order — every page left CONNECTED
/// for the next consoled (see ``ConsoleDaemon/stop()``).
public struct ConsoledService: Service {
    public let daemon: ConsoleDaemon
    private let logger: Logger
    private let ready: (@Sendable () -> Void)?

    /// - Parameter ready: called once the existing domains have been scanned and
    ///   the sockets serve.
    public init(daemon: ConsoleDaemon, logger: Logger, ready: (@Sendable () -> Void)? = nil) {
        self.daemon = daemon
        self.logger = logger
        self.ready = ready
    }

    public func run() async throws {
        try await daemon.start()
        ready?()
        let daemon = self.daemon
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        try? await cancelWhenGracefulShutdown {
            for await _ in hangups { await daemon.reopenLogs() }
        }
        logger.info("stopping")
        await daemon.stop()
    }
}
