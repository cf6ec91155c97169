//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOPosix
import XenABI
import XenHypervisor
import XenMemory
import XenstoreClient
import XenstoreServer

/// xenstored's hub and ring transport on an event loop of the test process, over
/// any hypervisor (usually ``FakeHypervisor``): the in-memory xenstore for
/// in-process tests of the layers above it, the way swift-nio tests a handler on
/// an `EmbeddedChannel`. Guests reach it over their real xenstore rings once
/// introduced; dom0 over a ring of its own (``connectDom0()``), as a dom0 kernel
/// does on real Xen.
public final class InProcessXenstored: Sendable {
    public let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    public let hub: XenstoreHub
    public let domains: RingDomains
    private let hypervisor: any PrivilegedHypervisor

    public init(hypervisor: any PrivilegedHypervisor) async throws {
        let loop = group.next()
        let logger = Logger(label: "test.xenstored")
        hub = try await loop.submit { XenstoreHub(eventLoop: loop, logger: logger) }.get()
        domains = RingDomains(hypervisor: hypervisor, group: group, logger: logger)
        self.hypervisor = hypervisor
    }

    /// Serves the ring a dom0 kernel set up: `page`, and an unbound port of dom0's
    /// offered to dom0.
    public func serveLocal(page: GuestPage, port: EvtchnPort) async throws {
        let (hub, domains) = (hub, domains)
        try await hub.eventLoop.submit {
            hub.domainRings = domains
            try domains.serveLocal(page: page, port: port, hub: hub)
        }.get()
    }

    /// A privileged client over the local ring, as dom0's kernel has (xenstored
    /// serves one: a second call replaces the first client's ring). Serving it
    /// also connects guests' rings to the hub, so INTRODUCE works from then on.
    public func connectDom0() async throws -> XenstoreClient {
        let channel = try hypervisor.allocateUnbound(remote: .dom0)
        let memory = HeapPage()
        try await serveLocal(
            page: GuestPage(region: memory.region, isWritable: true, owner: memory),
            port: channel.port
        )
        _ = try channel.wait(timeoutMilliseconds: 10_000)  // xenstored's first event
        return try await XenstoreClient(
            transport: RingClientTransport(
                page: GuestPage(region: memory.region, isWritable: true, owner: memory),
                channel: channel,
                hypervisor: hypervisor
            )
        )
    }

    public func stop() async throws {
        let (hub, domains) = (hub, domains)
        try await hub.eventLoop.submit {
            domains.stop()
            hub.closeAll()
        }.get()
        try await group.shutdownGracefully()
    }
}
