//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import XenABI

/// Checks every offset, size and constant in XenABI against the installed Xen
/// headers (Debian's 4.17: no console `connection` field and no xenstore
/// `evtchn_port`, so their struct sizes must equal our offsets of those fields).
@Suite("Layout conformance against libxen-dev", .enabled(if: CHarness.headersAvailable, "skipped: install libxen-dev"))
struct LayoutConformanceTests {
    /// "name value" lines printed by C/layout.c.
    static let probed = Result { try probe() }

    static func probe() throws -> [String: String] {
        let binary = try CHarness.build("layout")
        let result = try CHarness.run(binary, [])
        guard result.status == 0 else { throw CHarness.Failure(description: "layout probe failed: \(result.stderr)") }
        var values: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
        }
        return values
    }

    @Test func everyOffsetSizeAndConstantMatches() throws {
        let c = try Self.probed.get()
        let expected: [String: Int] = [
            "console.in": ConsoleInterface.inOffset,
            "console.in.size": ConsoleInterface.inSize,
            "console.out": ConsoleInterface.outOffset,
            "console.out.size": ConsoleInterface.outSize,
            "console.in_cons": ConsoleInterface.inConsOffset,
            "console.in_prod": ConsoleInterface.inProdOffset,
            "console.out_cons": ConsoleInterface.outConsOffset,
            "console.out_prod": ConsoleInterface.outProdOffset,
            "console.index.size": MemoryLayout<UInt32>.size,
            // 4.17 has no `connection`: the struct ends exactly where it begins.
            "console.sizeof": ConsoleInterface.connectionOffset,
            "xs.req": XenstoreInterface.reqOffset,
            "xs.rsp": XenstoreInterface.rspOffset,
            "xs.req_cons": XenstoreInterface.reqConsOffset,
            "xs.req_prod": XenstoreInterface.reqProdOffset,
            "xs.rsp_cons": XenstoreInterface.rspConsOffset,
            "xs.rsp_prod": XenstoreInterface.rspProdOffset,
            "xs.server_features": XenstoreInterface.serverFeaturesOffset,
            "xs.connection": XenstoreInterface.connectionOffset,
            "xs.error": XenstoreInterface.errorOffset,
            // 4.17 has no `evtchn_port`: the struct ends where it begins.
            "xs.sizeof": XenstoreInterface.evtchnPortOffset,
            "xs.ring_size": XenstoreInterface.ringSize,
            "xs.payload_max": XenstoreInterface.payloadMax,
            "xs.abs_path_max": XenstoreInterface.absolutePathMax,
            "xs.rel_path_max": XenstoreInterface.relativePathMax,
            "xs.feature.reconnection": Int(XenstoreServerFeatures.reconnection.rawValue),
            "xs.feature.error": Int(XenstoreServerFeatures.error.rawValue),
            "xs.connected": Int(XenstoreConnection.connected.rawValue),
            "xs.reconnect": Int(XenstoreConnection.reconnect.rawValue),
            "xs.error.none": Int(XenstoreRingError.none.rawValue),
            "xs.error.comm": Int(XenstoreRingError.comm.rawValue),
            "xs.error.ringidx": Int(XenstoreRingError.ringIndex.rawValue),
            "xs.error.proto": Int(XenstoreRingError.proto.rawValue),
            "sockmsg.type": XenstoreHeader.typeOffset,
            "sockmsg.req_id": XenstoreHeader.reqIDOffset,
            "sockmsg.tx_id": XenstoreHeader.txIDOffset,
            "sockmsg.len": XenstoreHeader.lenOffset,
            "sockmsg.sizeof": XenstoreHeader.size,
            "XS_RESET_WATCHES": Int(XenstoreMessageType.resetWatches.rawValue),
            "XS_DIRECTORY_PART": Int(XenstoreMessageType.directoryPart.rawValue),
            "XS_TYPE_COUNT": Int(XenstoreMessageType.legacyTypeCount),
            "XS_INVALID": Int(XenstoreMessageType.invalid.rawValue),
            "grant.flags": GrantEntryV1.flagsOffset,
            "grant.domid": GrantEntryV1.domidOffset,
            "grant.frame": GrantEntryV1.frameOffset,
            "grant.sizeof": GrantEntryV1.size,
            "GTF_invalid": Int(GrantFlags.invalid.rawValue),
            "GTF_permit_access": Int(GrantFlags.permitAccess.rawValue),
            "GTF_accept_transfer": Int(GrantFlags.acceptTransfer.rawValue),
            "GTF_transitive": Int(GrantFlags.transitive.rawValue),
            "GTF_type_mask": Int(GrantFlags.typeMask),
            "GTF_readonly": Int(GrantFlags.readOnly.rawValue),
            "GTF_reading": Int(GrantFlags.reading.rawValue),
            "GTF_writing": Int(GrantFlags.writing.rawValue),
            "GNTTAB_NR_RESERVED_ENTRIES": Int(GrantRef.firstUnreserved.rawValue),
            "GNTTAB_RESERVED_CONSOLE": Int(GrantRef.console.rawValue),
            "GNTTAB_RESERVED_XENSTORE": Int(GrantRef.xenstore.rawValue),
            "grant_ref.size": MemoryLayout<GrantRef>.size,
            "domid.size": MemoryLayout<DomID>.size,
            "evtchn_port.size": MemoryLayout<EvtchnPort>.size,
            "DOMID_FIRST_RESERVED": Int(DomID.firstReserved.rawValue),
            "DOMID_SELF": Int(DomID.domSelf.rawValue),
            "DOMID_INVALID": Int(DomID.invalid.rawValue),
            "start_info.magic": PVStartInfo.magicOffset,
            "start_info.magic.size": PVStartInfo.magicSize,
            "start_info.nr_pages": PVStartInfo.pageCountOffset,
            "start_info.shared_info": PVStartInfo.sharedInfoOffset,
            "start_info.flags": PVStartInfo.flagsOffset,
            "start_info.store_mfn": PVStartInfo.storeFrameOffset,
            "start_info.store_evtchn": PVStartInfo.storeEventChannelOffset,
            "start_info.console.mfn": PVStartInfo.consoleFrameOffset,
            "start_info.console.evtchn": PVStartInfo.consoleEventChannelOffset,
            "start_info.mfn_list": PVStartInfo.frameListOffset,
            "start_info.cmd_line": PVStartInfo.commandLineOffset,
            "start_info.cmd_line.size": PVStartInfo.commandLineSize,
            "start_info.sizeof": PVStartInfo.size,
            "vcpu_info.sizeof": PVSharedInfo.vcpuInfoSize,
            "vcpu_info.upcall_pending": PVSharedInfo.upcallPendingOffset,
            "vcpu_info.upcall_mask": PVSharedInfo.upcallMaskOffset,
            "vcpu_info.time": PVSharedInfo.timeOffset,
            "shared_info.evtchn_pending": PVSharedInfo.eventPendingOffset,
            "shared_info.evtchn_mask": PVSharedInfo.eventMaskOffset,
            "time.version": PVTimeInfo.versionOffset,
            "time.tsc_timestamp": PVTimeInfo.tscTimestampOffset,
            "time.system_time": PVTimeInfo.systemTimeOffset,
            "time.tsc_to_system_mul": PVTimeInfo.tscToSystemMultiplierOffset,
            "time.tsc_shift": PVTimeInfo.tscShiftOffset,
            "__HYPERVISOR_update_va_mapping": Hypercall.updateVAMapping,
            "__HYPERVISOR_xen_version": Hypercall.xenVersion,
            "__HYPERVISOR_console_io": Hypercall.consoleIO,
            "__HYPERVISOR_sched_op": Hypercall.schedulerOperation,
            "__HYPERVISOR_event_channel_op": Hypercall.eventChannelOperation,
            "CONSOLEIO_write": Hypercall.consoleIOWrite,
            "SCHEDOP_yield": Hypercall.scheduleYield,
            "SCHEDOP_shutdown": Hypercall.scheduleShutdown,
            "SCHEDOP_poll": Hypercall.schedulePoll,
            "SHUTDOWN_poweroff": Hypercall.shutdownPoweroff,
            "EVTCHNOP_send": Hypercall.eventChannelSend,
            "UVMF_INVLPG": Hypercall.invalidateOnePage,
            "sched_poll.ports": Hypercall.schedulePollPortsOffset,
            "sched_poll.nr_ports": Hypercall.schedulePollCountOffset,
            "sched_poll.timeout": Hypercall.schedulePollTimeoutOffset,
            "sched_poll.sizeof": Hypercall.schedulePollSize,
            "EPERM": -Hypercall.permissionDenied,
            "__HYPERVISOR_grant_table_op": Hypercall.grantTableOperation,
            "EVTCHNOP_alloc_unbound": Hypercall.eventChannelAllocateUnbound,
            "alloc_unbound.remote_dom": Hypercall.allocateUnboundRemoteOffset,
            "alloc_unbound.port": Hypercall.allocateUnboundPortOffset,
            "alloc_unbound.sizeof": Hypercall.allocateUnboundSize,
            "GNTTABOP_setup_table": Hypercall.grantSetupTable,
            "setup_table.nr_frames": Hypercall.setupTableCountOffset,
            "setup_table.status": Hypercall.setupTableStatusOffset,
            "setup_table.frame_list": Hypercall.setupTableFrameListOffset,
            "setup_table.sizeof": Hypercall.setupTableSize,
        ]
        for (name, value) in expected.sorted(by: { $0.key < $1.key }) {
            #expect(c[name] == String(value), "\(name): C says \(c[name] ?? "nothing"), Swift says \(value)")
        }
        // Every XS_* the 4.17 header names has the same number in Swift.
        for (type, name) in XenstoreMessageType.allNamed where type.rawValue < XenstoreMessageType.legacyTypeCount {
            if type == .restrict { continue }  // removed from the header
            #expect(c["XS_\(name)"] == String(type.rawValue), "XS_\(name)")
        }
        // XenbusState, by name.
        for state in XenbusState.allCases {
            #expect(c["XenbusState\(state)"] == String(state.rawValue), "XenbusState\(state)")
        }
        // The console flag: 4.21 adds it right after out_prod, as a byte.
        #expect(ConsoleInterface.connectionOffset == ConsoleInterface.outProdOffset + 4)
        #expect(ConsoleInterface.structSize == 3092)
        #expect(ConsoleConnection.connected.rawValue == 0 && ConsoleConnection.disconnected.rawValue == 1)
    }

    @Test func errorTableMatchesXsdErrors() throws {
        let c = try Self.probed.get()
        for error in XenstoreError.allCases {
            #expect(c["error.\(error.rawValue)"] == "\(error.name) \(error.errno)")
        }
        #expect(c["error.\(XenstoreError.allCases.count)"] == nil, "the header has more errors than Swift")
    }
}
