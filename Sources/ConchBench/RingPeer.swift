//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemExtras
import SystemPackage
import XenABI
import XenMemory
import XenRing

/// What a ring peer process is asked to do. The peer plays the guest (frontend)
/// on a console ring whose page, and both notification eventfds, it receives over
/// a Unix socket with SCM_RIGHTS.
public enum RingPeerMode: UInt32, Sendable, CaseIterable {
    /// Write `totalBytes` of the test pattern to `out`, spinning on a full ring.
    case produceBusy = 1
    /// Write the pattern, signalling after each batch and blocking when full.
    case produceEventfd = 2
    /// Write the pattern, spinning briefly before blocking; signal only a sleeper.
    case produceHybrid = 3
    /// Read `totalBytes` from `in` and write each byte back to `out`, with
    /// notifications both ways.
    case echo = 4
}

/// The fixed 24-byte request a parent sends with the descriptors
/// [ring page memfd (2 pages: ring + control), toBackend eventfd, toFrontend eventfd].
public struct RingPeerRequest: Hashable, Sendable {
    public var mode: RingPeerMode
    public var chunkSize: UInt32
    public var totalBytes: UInt64

    public init(mode: RingPeerMode, chunkSize: UInt32, totalBytes: UInt64) {
        self.mode = mode
        self.chunkSize = chunkSize
        self.totalBytes = totalBytes
    }

    static let size = 16

    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        for value in [mode.rawValue, chunkSize] { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        withUnsafeBytes(of: totalBytes.littleEndian) { bytes += $0 }
        return bytes
    }

    init?(decoding bytes: [UInt8]) {
        guard bytes.count == Self.size else { return nil }
        func word(_ at: Int) -> UInt32 { bytes[at..<at + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        let total = bytes[8..<16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard let mode = RingPeerMode(rawValue: word(0)), word(4) > 0 else { return nil }
        self.init(mode: mode, chunkSize: word(4), totalBytes: total)
    }
}

/// The byte at stream position `index` of the benchmark and test pattern: a
/// period of 251 (prime) so it never lines up with ring or chunk sizes.
@inlinable
public func ringTestPattern(_ index: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: index % 251) }

/// Offsets in the control page (page 1) used by the hybrid mode's
/// notification suppression. Kept off the console page: byte 3088 there is the
/// `connection` flag.
enum ControlPage {
    static let frontendSleeping = 0
    static let backendSleeping = 4
}

/// Both notification directions of a simulated event channel.
struct Notifiers {
    let toBackend: EventNotifier
    let toFrontend: EventNotifier
}

/// The peer process's side: receives the request and descriptors on `socket`,
/// runs, then writes one byte back (0 = success) before exiting.
public enum RingPeer {
    public static func serve(socket: UnixSocket) throws -> Int32 {
        let (header, descriptors) = try socket.receiveExactly(RingPeerRequest.size, maxDescriptors: 3)
        guard descriptors.count == 3, let request = RingPeerRequest(decoding: header) else {
            for descriptor in descriptors { try? descriptor.close() }
            try socket.send([1])
            return 2
        }
        let memoryFile = try SharedMemoryFile(adopting: descriptors[0])
        let ringPage = try memoryFile.map(pageOffset: 0)
        let controlPage = try memoryFile.map(pageOffset: 1)
        let notifiers = Notifiers(
            toBackend: EventNotifier(adopting: descriptors[1]),
            toFrontend: EventNotifier(adopting: descriptors[2])
        )
        let ring = ConsoleRing(memory: ringPage).frontend
        let ok: Bool
        switch request.mode {
        case .produceBusy, .produceEventfd, .produceHybrid:
            ok = try produce(request, ring: ring, control: controlPage, notifiers: notifiers)
        case .echo:
            ok = try echo(request, ring: ring, notifiers: notifiers)
        }
        try socket.send([ok ? 0 : 1])
        return ok ? 0 : 1
    }

    static func produce(
        _ request: RingPeerRequest,
        ring: RingEndpoint<MappedMemory>,
        control: MappedMemory,
        notifiers: Notifiers
    ) throws -> Bool {
        let chunk = Int(request.chunkSize)
        // One period of the pattern plus a chunk, so any chunk is a slice of it.
        let pattern = (0..<UInt64(chunk + 251)).map(ringTestPattern)
        var sent: UInt64 = 0
        while sent < request.totalBytes {
            let want = Int(min(UInt64(chunk), request.totalBytes - sent))
            let phase = Int(sent % 251)
            var offset = 0
            while offset < want {
                let written = try pattern.withUnsafeBytes { buffer in
                    try ring.output.write(UnsafeRawBufferPointer(rebasing: buffer[(phase + offset)..<(phase + want)]))
                }
                offset += written
                if written > 0 {
                    switch request.mode {
                    case .produceEventfd: try notifiers.toBackend.signal()
                    case .produceHybrid: try signalIfSleeping(control, ControlPage.backendSleeping, notifiers.toBackend)
                    default: break
                    }
                    continue
                }
                switch request.mode {
                case .produceEventfd: try notifiers.toFrontend.wait()
                case .produceHybrid:
                    try spinThenBlock(control, ControlPage.frontendSleeping, notifiers.toFrontend) {
                        (try? ring.output.freeSpace()) ?? 1 > 0
                    }
                default: break
                }
            }
            sent += UInt64(want)
        }
        return true
    }

    static func echo(_ request: RingPeerRequest, ring: RingEndpoint<MappedMemory>, notifiers: Notifiers) throws -> Bool
    {
        var buffer = [UInt8](repeating: 0, count: Int(request.chunkSize))
        var moved: UInt64 = 0
        while moved < request.totalBytes {
            let got = try buffer.withUnsafeMutableBytes { try ring.input.read(into: $0) }
            if got == 0 {
                try notifiers.toFrontend.wait()
                continue
            }
            try notifiers.toBackend.signal()  // the backend may write more input now
            var offset = 0
            while offset < got {
                let written = try buffer.withUnsafeBytes {
                    try ring.output.write(UnsafeRawBufferPointer(rebasing: $0[offset..<got]))
                }
                offset += written
                if written > 0 { try notifiers.toBackend.signal() } else { try notifiers.toFrontend.wait() }
            }
            moved += UInt64(got)
        }
        return true
    }
}

/// Hybrid notification: the waiter spins `spinLimit` polls, then announces that
/// it sleeps, re-checks (after a full fence, so a notifier cannot miss the flag),
/// and blocks. The notifier signals only when the flag is set.
let hybridSpinLimit = 5000

func spinThenBlock(_ control: MappedMemory, _ flagOffset: Int, _ notifier: EventNotifier, ready: () -> Bool) throws {
    for _ in 0..<hybridSpinLimit {
        if ready() { return }
    }
    control.store32(1, at: flagOffset, ordering: .relaxed)
    fullMemoryFence()
    if !ready() { try notifier.wait() }
    control.store32(0, at: flagOffset, ordering: .relaxed)
}

func signalIfSleeping(_ control: MappedMemory, _ flagOffset: Int, _ notifier: EventNotifier) throws {
    fullMemoryFence()
    if control.load32(at: flagOffset, ordering: .relaxed) != 0 { try notifier.signal() }
}
