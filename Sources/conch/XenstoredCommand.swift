//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Hypervisors
import Logging
import ServiceLifecycle
import SystemExtras
import XenHypervisor
import XenSim
import XenstoreClient
import XenstoreCore
import XenstoreServer

struct Xenstored: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xenstored",
        abstract: "Run the xenstore daemon (wire-compatible with Xen's xenstored).",
        discussion: """
            Serves the xenstore protocol on a Unix socket (mode 0600); every socket client is \
            privileged dom0, as with Xen's own daemon. Point Xen's tools at it with \
            XENSTORED_PATH. Stops cleanly on SIGTERM or SIGINT. Example:

              conch xenstored --socket /tmp/xs.sock &
              XENSTORED_PATH=/tmp/xs.sock xenstore-ls

            On a Xen dom0 (or with --hypervisor xen) it is the host's xenstored, in place of \
            Xen's: it serves dom0's kernel through /proc/xen/xsd_kva, the tools on \
            /var/run/xenstored/socket (or $XENSTORED_PATH), and every domain the toolstack \
            introduces through its ring.
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @OptionGroup var hypervisorOptions: HypervisorOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: "Socket path (default: <run-dir>/xenstored.sock).")
    var socket: String?

    @Option(
        help: """
            Record every change here and resume from it after a restart (default with a run \
            directory: <run-dir>/xenstored.journal; without one, none).
            """
    )
    var journal: String?

    @Option(name: [.customShort("E"), .customLong("quota-nodes")], help: "Nodes an unprivileged domain may own.")
    var nodes = Quotas.cxenstored417.nodes
    @Option(name: [.customShort("W"), .customLong("quota-watches")], help: "Watches per unprivileged domain.")
    var watches = Quotas.cxenstored417.watches
    @Option(name: [.customShort("S"), .customLong("quota-node-size")], help: "Bytes of one node record.")
    var nodeSize = Quotas.cxenstored417.nodeSize
    @Option(name: [.customShort("t"), .customLong("quota-transactions")], help: "Open transactions per domain.")
    var transactions = Quotas.cxenstored417.transactions
    @Option(name: [.customShort("A"), .customLong("quota-permissions")], help: "Permission entries per node.")
    var permissions = Quotas.cxenstored417.permissions
    @Option(help: "Serve Prometheus metrics on HOST:PORT (GET /metrics; 127.0.0.1:9111, say). Off by default.")
    var metrics: String?

    @Option(name: .customLong("quota-transaction-nodes"), help: "Nodes one transaction may touch.")
    var transactionNodes = Quotas.cxenstored417.transactionNodes
    @Option(name: [.customShort("M"), .customLong("quota-path-length")], help: "Longest path (at most 2048).")
    var pathLength = Quotas.cxenstored417.pathLength

    func validate() throws {
        for (name, value) in [
            ("nodes", nodes), ("watches", watches), ("node-size", nodeSize), ("transactions", transactions),
            ("permissions", permissions), ("transaction-nodes", transactionNodes), ("path-length", pathLength),
        ] where value < 1 {
            throw ValidationError("--quota-\(name) must be at least 1 (got \(value))")
        }
        if pathLength > 2048 { throw ValidationError("--quota-path-length is at most 2048, as in cxenstored") }
    }

    func run() async throws {
        let logger = logging.makeLogger(label: "conch.xenstored")
        raiseDescriptorLimit()
        let placement = try placement(logger: logger)
        let quotas = Quotas(
            nodes: nodes,
            watches: watches,
            nodeSize: nodeSize,
            transactions: transactions,
            permissions: permissions,
            transactionNodes: transactionNodes,
            pathLength: pathLength
        )
        let service = XenstoredService(
            configuration: .init(
                socketPath: placement.socket,
                quotas: quotas,
                hypervisor: placement.hypervisor,
                journalPath: journal ?? placement.stateDirectory?.xenstoredJournal,
                metricsAddress: metrics
            ),
            logger: logger,
            // Under systemd (Type=notify), ready once it serves: xen-init-dom0 follows.
            ready: { SystemdNotify.ready() }
        )
        let group = ServiceGroup(
            configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        let pidFile = placement.stateDirectory.map { PidFile(path: $0.xenstoredPidFile) }
        try pidFile?.write()
        defer { pidFile?.remove() }
        try await group.run()
    }

    /// Where this daemon serves, and which hypervisor's rings.
    private struct Placement {
        var socket: String
        /// Holds the pid file and the journal; nil for a bare `--socket`.
        var stateDirectory: RunDirectory?
        var hypervisor: (any PrivilegedHypervisor)?
    }

    private func placement(logger: Logger) throws -> Placement {
        let runDirectory = runDirectoryOptions.runDirectory
        switch hypervisorOptions.backend(runDirectory: runDirectory) {
        case .xen:
            // The host's xenstored: where Xen's tools look (XENSTORED_PATH, else
            // /var/run/xenstored/socket); pid file and journal beside the socket.
            let socket = socket ?? XenstoreClient.currentEnvironment()["XENSTORED_PATH"] ?? Self.xenSocketPath
            let state = RunDirectory(path: String(socket[..<(socket.lastIndex(of: "/") ?? socket.startIndex)]))
            try state.create()
            return Placement(socket: socket, stateDirectory: state, hypervisor: try HypervisorFactory.privileged(.xen))
        case .simulated(let runDirectory):
            // `--socket` alone serves just that socket; otherwise the run directory holds
            // the socket (unless given), the pid file and the hypervisor to serve guests.
            guard socket == nil || runDirectoryOptions.explicitPath != nil else {
                return Placement(socket: socket ?? runDirectory.xenstoredSocket)
            }
            try runDirectory.create()
            var hypervisor: (any PrivilegedHypervisor)?
            do {
                hypervisor = try HypervisorFactory.privileged(.simulated(runDirectory))
            } catch {
                logger.warning("no hypervisor in \(runDirectory): serving the Unix socket only (\(error))")
            }
            return Placement(
                socket: socket ?? runDirectory.xenstoredSocket,
                stateDirectory: runDirectory,
                hypervisor: hypervisor
            )
        }
    }

    /// Where Xen's libxenstore looks for the daemon by default.
    static let xenSocketPath = "/var/run/xenstored/socket"
}
