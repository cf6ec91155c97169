//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import ServiceLifecycle
import SystemExtras
import XenHypervisor
import XenSim
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
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
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
        let runDirectory = runDirectoryOptions.runDirectory
        raiseDescriptorLimit()
        // `--socket` alone serves just that socket; otherwise the run directory holds
        // the socket (unless given), the pid file and the hypervisor to serve guests.
        let usesRunDirectory = socket == nil || runDirectoryOptions.explicitPath != nil
        let socketPath = socket ?? runDirectory.xenstoredSocket
        var pidFile: PidFile?
        if usesRunDirectory {
            try runDirectory.create()
            pidFile = PidFile(path: runDirectory.xenstoredPidFile)
        }
        let quotas = Quotas(
            nodes: nodes,
            watches: watches,
            nodeSize: nodeSize,
            transactions: transactions,
            permissions: permissions,
            transactionNodes: transactionNodes,
            pathLength: pathLength
        )
        // With a run directory, guests' rings come through the hypervisor there.
        var hypervisor: (any PrivilegedHypervisor)?
        if usesRunDirectory {
            do {
                hypervisor = try HypervisorFactory.privileged(.simulated(runDirectory))
            } catch {
                logger.warning("no hypervisor in \(runDirectory): serving the Unix socket only (\(error))")
            }
        }
        let service = XenstoredService(
            configuration: .init(
                socketPath: socketPath,
                quotas: quotas,
                hypervisor: hypervisor,
                journalPath: journal ?? (usesRunDirectory ? runDirectory.xenstoredJournal : nil)
            ),
            logger: logger
        )
        let group = ServiceGroup(
            configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try pidFile?.write()
        defer { pidFile?.remove() }
        try await group.run()
    }
}
