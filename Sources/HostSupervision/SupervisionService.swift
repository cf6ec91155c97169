//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ServiceLifecycle

/// The host stack under swift-service-lifecycle: watches the daemons ten times a
/// second (``HostSupervisor/superviseOnce()``: restarts with back-off, log
/// rotation) until a graceful shutdown (SIGTERM or SIGINT to the service group),
/// then stops them in reverse order.
public struct SupervisionService: Service {
    public let supervisor: HostSupervisor
    /// Each event, as `conch up` says it ("consoled exited (…); restarting in 1 s").
    public let report: @Sendable (String) -> Void

    public init(supervisor: HostSupervisor, report: @escaping @Sendable (String) -> Void) {
        self.supervisor = supervisor
        self.report = report
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                for event in supervisor.superviseOnce() { report(event) }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        supervisor.stopAll()
    }
}
