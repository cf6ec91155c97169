//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Synchronization
import XenABI
import XenMemory
import XenRing

// The hypercall trampoline and friends (entry.S).
@_silgen_name("conch_hypercall")
func conch_hypercall(_ number: Int, _ a1: Int, _ a2: Int, _ a3: Int) -> Int
@_silgen_name("conch_rdtsc")
func conch_rdtsc() -> UInt64
@_silgen_name("conch_shared_info_page")
func conch_shared_info_page() -> UnsafeMutableRawPointer
@_silgen_name("conch_grant_table_page")
func conch_grant_table_page() -> UnsafeMutableRawPointer
@_silgen_name("conch_channel_page")
func conch_channel_page() -> UnsafeMutableRawPointer

/// A page of guest memory as Conch's cores see it (the console ring, the xenstore
/// ring): the same `SharedMemory` the simulator's guest uses over a memfd.
final class GuestPage: RegionBackedMemory, @unchecked Sendable {
    let region: RawMemoryRegion
    init(_ base: UnsafeMutableRawPointer) { region = RawMemoryRegion(base: base, byteCount: 4096) }
}

/// What this kernel asks of Xen.
enum Xen {
    /// `start_info`, as Xen handed it to `_start`.
    nonisolated(unsafe) static var startInfo: UnsafeRawPointer?
    /// The shared-info page once ``mapSharedInfo()`` has mapped it.
    nonisolated(unsafe) static var sharedInfo: UnsafeMutableRawPointer?

    static func field<T: FixedWidthInteger>(_ offset: Int, as type: T.Type) -> T {
        // SAFETY: start_info is a whole page Xen mapped for us; offsets come from
        // PVStartInfo, well inside it.
        startInfo!.loadUnaligned(fromByteOffset: offset, as: T.self)
    }

    /// `console_io` write; Xen's answer (negative: refused, as a domU usually is).
    @discardableResult
    static func consoleWrite(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        return conch_hypercall(Hypercall.consoleIO, Hypercall.consoleIOWrite, bytes.count, Int(bitPattern: base))
    }

    static func yield() {
        _ = conch_hypercall(Hypercall.schedulerOperation, Hypercall.scheduleYield, 0, 0)
    }

    static func powerOff() -> Never {
        var reason = UInt32(Hypercall.shutdownPoweroff)
        while true {
            // SAFETY: `reason` outlives the hypercall that reads it.
            withUnsafeMutablePointer(to: &reason) { pointer in
                _ = conch_hypercall(
                    Hypercall.schedulerOperation,
                    Hypercall.scheduleShutdown,
                    Int(bitPattern: pointer),
                    0
                )
            }
        }
    }

    /// EVTCHNOP_send: tell the other end of `port` to look.
    static func notify(_ port: UInt32) {
        var argument = port
        // SAFETY: `argument` outlives the hypercall that reads it.
        withUnsafeMutablePointer(to: &argument) { pointer in
            _ = conch_hypercall(
                Hypercall.eventChannelOperation,
                Hypercall.eventChannelSend,
                Int(bitPattern: pointer),
                0
            )
        }
    }

    /// Maps the shared-info page over a page of our own (its mapping is ours to
    /// change), for event-channel bits and the time.
    static func mapSharedInfo() -> Bool {
        let machineAddress = UInt64(field(PVStartInfo.sharedInfoOffset, as: UInt64.self))
        guard remap(conch_shared_info_page(), toMachineAddress: machineAddress) else { return false }
        sharedInfo = conch_shared_info_page()
        return true
    }

    /// Points our mapping of `page` at another machine page.
    static func remap(_ page: UnsafeMutableRawPointer, toMachineAddress address: UInt64) -> Bool {
        // Present, writable, user (a 64-bit PV kernel runs in ring 3), accessed, dirty.
        let entry = address | 0x67
        return conch_hypercall(
            Hypercall.updateVAMapping,
            Int(bitPattern: page),
            Int(bitPattern: UInt(entry)),
            Hypercall.invalidateOnePage
        ) == 0
    }

    /// Every page's machine frame, in the order Xen's builder mapped the pages from
    /// virtual address 0 (the P2M list).
    static var frameList: UnsafeBufferPointer<UInt64> {
        let count = Int(field(PVStartInfo.pageCountOffset, as: UInt64.self))
        let list = field(PVStartInfo.frameListOffset, as: UInt64.self)
        // SAFETY: Xen maps the P2M list (`count` entries) for the kernel at `list`.
        return UnsafeBufferPointer(start: UnsafePointer<UInt64>(bitPattern: UInt(list)), count: count)
    }

    /// The machine frame behind one of our own pages.
    static func machineFrame(of page: UnsafeMutableRawPointer) -> UInt64 {
        frameList[Int(UInt(bitPattern: page) >> 12)]
    }

    /// The grant table's first frame, mapped once (GNTTABOP_setup_table).
    nonisolated(unsafe) static var grantTable: UnsafeMutableRawPointer?

    static func mapGrantTable() -> UnsafeMutableRawPointer? {
        if let grantTable { return grantTable }
        var frame: UInt64 = 0
        var setup = [UInt8](repeating: 0, count: Hypercall.setupTableSize)
        let result = withUnsafeMutablePointer(to: &frame) { framePointer in
            setup.withUnsafeMutableBytes { raw in
                // SAFETY: `raw` is struct gnttab_setup_table's size; `frame` outlives the call.
                raw.storeBytes(of: DomID.domSelf.rawValue, toByteOffset: 0, as: UInt16.self)
                raw.storeBytes(of: UInt32(1), toByteOffset: Hypercall.setupTableCountOffset, as: UInt32.self)
                raw.storeBytes(
                    of: UInt64(UInt(bitPattern: framePointer)),
                    toByteOffset: Hypercall.setupTableFrameListOffset,
                    as: UInt64.self
                )
                let done = conch_hypercall(
                    Hypercall.grantTableOperation,
                    Hypercall.grantSetupTable,
                    Int(bitPattern: raw.baseAddress),
                    1
                )
                let status = raw.load(fromByteOffset: Hypercall.setupTableStatusOffset, as: Int16.self)
                return done == 0 && status == 0
            }
        }
        guard result, remap(conch_grant_table_page(), toMachineAddress: frame << 12) else { return nil }
        grantTable = conch_grant_table_page()
        return grantTable
    }

    /// Lets `domid` map our page `frame` through grant `ref` (a v1 entry: the
    /// frame and domain first, then the flag that makes it valid).
    static func grant(_ ref: GrantRef, of frame: UInt64, to domid: DomID) -> Bool {
        guard let table = mapGrantTable(), let frame32 = UInt32(exactly: frame) else { return false }
        let entry = table + Int(ref.rawValue) * GrantEntryV1.size
        // SAFETY: `ref` is well inside the first grant frame (512 v1 entries).
        entry.storeBytes(of: domid.rawValue, toByteOffset: GrantEntryV1.domidOffset, as: UInt16.self)
        entry.storeBytes(of: frame32, toByteOffset: GrantEntryV1.frameOffset, as: UInt32.self)
        (entry + GrantEntryV1.flagsOffset).assumingMemoryBound(to: Atomic<UInt16>.self).pointee.store(
            GrantFlags.permitAccess.rawValue,
            ordering: .releasing
        )
        return true
    }

    /// EVTCHNOP_alloc_unbound: a port of ours for `remote` to bind.
    static func allocatePort(for remote: DomID) -> UInt32? {
        var request = [UInt8](repeating: 0, count: Hypercall.allocateUnboundSize)
        return request.withUnsafeMutableBytes { raw -> UInt32? in
            // SAFETY: `raw` is struct evtchn_alloc_unbound's size, alive for the call.
            raw.storeBytes(of: DomID.domSelf.rawValue, toByteOffset: 0, as: UInt16.self)
            raw.storeBytes(of: remote.rawValue, toByteOffset: Hypercall.allocateUnboundRemoteOffset, as: UInt16.self)
            let result = conch_hypercall(
                Hypercall.eventChannelOperation,
                Hypercall.eventChannelAllocateUnbound,
                Int(bitPattern: raw.baseAddress),
                0
            )
            guard result == 0 else { return nil }
            return raw.load(fromByteOffset: Hypercall.allocateUnboundPortOffset, as: UInt32.self)
        }
    }

    /// Xen's system time, in ns since boot (vCPU 0's time info and the TSC).
    static func now() -> UInt64 {
        guard let shared = sharedInfo else { return 0 }
        let time = shared + PVSharedInfo.timeOffset
        let version = time.assumingMemoryBound(to: Atomic<UInt32>.self)
        while true {
            // SAFETY: the time info lies in the mapped shared-info page; the version
            // read with acquire ordering brackets the other fields (odd: being written).
            let before = version.pointee.load(ordering: .acquiring)
            if before & 1 == 1 { continue }
            let stamp = time.load(fromByteOffset: PVTimeInfo.tscTimestampOffset, as: UInt64.self)
            let system = time.load(fromByteOffset: PVTimeInfo.systemTimeOffset, as: UInt64.self)
            let multiplier = time.load(fromByteOffset: PVTimeInfo.tscToSystemMultiplierOffset, as: UInt32.self)
            let shift = time.load(fromByteOffset: PVTimeInfo.tscShiftOffset, as: Int8.self)
            atomicMemoryFence(ordering: .acquiring)
            guard version.pointee.load(ordering: .acquiring) == before else { continue }
            var delta = conch_rdtsc() &- stamp
            delta = shift >= 0 ? delta << UInt64(shift) : delta >> UInt64(-Int(shift))
            let scaled = delta.multipliedFullWidth(by: UInt64(multiplier))
            return system &+ (scaled.high << 32 | scaled.low >> 32)
        }
    }

    /// Clears `port`'s pending bit; returns whether it was set.
    @discardableResult
    static func clearPending(_ port: UInt32) -> Bool {
        guard let shared = sharedInfo else { return false }
        let word = (shared + PVSharedInfo.eventPendingOffset + Int(port / 64) * 8)
            .assumingMemoryBound(to: Atomic<UInt64>.self)
        let bit = UInt64(1) << UInt64(port % 64)
        // SAFETY: the pending bitmap lies in the mapped shared-info page.
        return word.pointee.bitwiseAnd(~bit, ordering: .sequentiallyConsistent).oldValue & bit != 0
    }

    /// Sleeps until one of `ports` is pending or `nanoseconds` pass (SCHEDOP_poll;
    /// events stay masked, so nothing upcalls). Without shared info, yields once.
    static func wait(ports: [UInt32], nanoseconds: UInt64) {
        guard sharedInfo != nil else { return yield() }
        var ports = ports
        ports.withUnsafeMutableBufferPointer { buffer in
            var poll = (UInt64(UInt(bitPattern: buffer.baseAddress)), UInt64(buffer.count), now() &+ nanoseconds)
            // SAFETY: `poll` has struct sched_poll's layout (three 8-byte fields, as
            // the conformance test checks) and outlives the hypercall; `ports` too.
            withUnsafeMutablePointer(to: &poll) { pointer in
                _ = conch_hypercall(Hypercall.schedulerOperation, Hypercall.schedulePoll, Int(bitPattern: pointer), 0)
            }
        }
    }
}

/// Writes all of `bytes` into a ring, telling the backend on `port` after each
/// part and sleeping on the port while the ring is full. Gives up (false) after
/// `rounds` full-ring waits of 10 ms, or never when nil; a ring whose indices are
/// invalid fails at once.
func writeAll(_ bytes: [UInt8], to writer: RingWriter<GuestPage>, port: UInt32, rounds: Int?) -> Bool {
    var pending = bytes[...]
    var waited = 0
    while !pending.isEmpty {
        Xen.clearPending(port)
        guard let written = try? writer.write(pending) else { return false }
        pending = pending.dropFirst(written)
        Xen.notify(port)
        if written == 0 {
            waited += 1
            if let rounds, waited > rounds { return false }
            Xen.wait(ports: [port], nanoseconds: 10_000_000)
        }
    }
    return true
}
