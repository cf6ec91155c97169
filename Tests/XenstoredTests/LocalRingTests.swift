//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Logging
import NIOPosix
import Testing
import XenABI
import XenHypervisor
import XenMemory
import XenTestKit
import XenstoreClient
import XenstoreServer

/// A xenstored in a real dom0 serves dom0's own kernel over the ring the kernel
/// set up (`/proc/xen/xsd_kva`, `xsd_port`). On real Xen the rig's `xenstored`
/// scenario covers it; here the fake hypervisor stands in for the kernel's side.
@Suite("xenstored: dom0's own kernel ring")
struct LocalRingTests {
    @Test func theKernelGetsAFirstEventAndPrivilegedAccess() async throws {
        let fake = FakeHypervisor()
        let hypervisor = fake.privileged()
        // dom0's kernel: one page and an unbound port offered to dom0 itself.
        let kernelChannel = try hypervisor.allocateUnbound(remote: .dom0)
        let memory = HeapPage()
        let daemon = try await InProcessXenstored(hypervisor: hypervisor)
        try await daemon.serveLocal(
            page: GuestPage(region: memory.region, isWritable: true, owner: memory),
            port: kernelChannel.port
        )

        // Linux's xenbus waits for xenstored's first event before it probes.
        #expect(try kernelChannel.wait(timeoutMilliseconds: 10_000), "no first event on the kernel's port")

        let kernel = try await XenstoreClient(
            transport: RingClientTransport(
                page: GuestPage(region: memory.region, isWritable: true, owner: memory),
                channel: kernelChannel,
                hypervisor: hypervisor
            )
        )
        // Only a privileged connection may create nodes under the root.
        try await kernel.write("/tool/kernel-probe", "dom0")
        #expect(try await kernel.readString("/tool/kernel-probe") == "dom0")
        #expect(try await kernel.getDomainPath(.dom0) == "/local/domain/0")
        // Watches are the kernel's way of hearing about backends: one fires.
        var events = try await kernel.watch("/local/domain/0/backend", token: "be").makeAsyncIterator()
        _ = await events.next()  // the immediate event of a new watch
        try await kernel.write("/local/domain/0/backend/vif/1/0/state", "1")
        let event = await events.next()
        #expect(event?.path == "/local/domain/0/backend/vif/1/0/state")
        kernel.close()
        try await daemon.stop()
    }

    @Test func aPortNotOfferedToDom0IsRefused() async throws {
        let fake = FakeHypervisor()
        let hypervisor = fake.privileged()
        let memory = HeapPage()
        let daemon = try await InProcessXenstored(hypervisor: hypervisor)
        await #expect(throws: HypervisorError.self) {
            try await daemon.serveLocal(
                page: GuestPage(region: memory.region, isWritable: true, owner: memory),
                port: EvtchnPort(77)
            )
        }
        try await daemon.stop()
    }
}
