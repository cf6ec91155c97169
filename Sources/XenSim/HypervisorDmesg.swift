//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import DequeModule
import XenABI

/// The hypervisor console ring (what `xl dmesg` reads): bounded, oldest lines
/// dropped first, each guest line prefixed `(d<N>) ` as Xen does. Partial lines
/// are held per domain until their newline, so two guests' output never
/// interleaves inside a line.
///
/// A guest that may use `console_io` is still only one voice among many:
/// - its bytes are rate-limited (a token bucket per domain); what exceeds the
///   rate is dropped, counted, and announced by a marker line once it writes again;
/// - its lines may fill at most `share` bytes of the ring: past that its own
///   oldest lines go, not other domains', so a flood cannot wipe the log.
struct HypervisorDmesg {
    struct Limits: Sendable {
        /// Bytes the ring keeps.
        var capacity: Int
        /// Bytes one domain's lines may occupy.
        var share: Int
        /// Sustained rate and burst of one domain's writes.
        var rate: TokenBucket.Configuration

        init(capacity: Int, share: Int? = nil, rate: TokenBucket.Configuration = Limits.defaultRate) {
            self.capacity = capacity
            self.share = min(capacity, share ?? max(capacity / 4, 1))
            self.rate = rate
        }

        /// 16 KiB/s with a 64 KiB burst: a boot log passes, a flood does not.
        static let defaultRate = TokenBucket.Configuration(rate: 16 << 10, burst: 64 << 10)
    }

    private struct Line {
        /// nil for the hypervisor's own lines.
        var domid: DomID?
        var bytes: [UInt8]
        /// Evicted out of order (its domain went over its share): skipped, then popped.
        var evicted = false
    }

    let limits: Limits
    /// Lines in order; `firstSequence` numbers the first.
    private var lines = Deque<Line>()
    private var firstSequence: UInt64 = 0
    private var byteCount = 0
    /// Each domain's bytes in the ring and the sequence numbers of its lines.
    private var domainLines: [DomID: (bytes: Int, sequences: Deque<UInt64>)] = [:]
    private var partialLines: [DomID: [UInt8]] = [:]
    private var buckets: [DomID: TokenBucket] = [:]
    /// Bytes each domain lost to the rate limit since its last marker.
    private(set) var rateDropped: [DomID: Int] = [:]
    /// Longest partial line held before it is flushed anyway.
    let maxLine = 1024

    init(limits: Limits) { self.limits = limits }

    init(capacity: Int = 1 << 20) { self.init(limits: Limits(capacity: capacity)) }

    /// The ring's contents, oldest first.
    var bytes: [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(byteCount)
        for line in lines where !line.evicted { result += line.bytes }
        return result
    }

    /// A guest's `console_io` write at `now` (monotonic nanoseconds).
    mutating func write(_ data: [UInt8], from domid: DomID, now: UInt64) {
        // A write passes whole or not at all (one larger than the burst passes its
        // first `burst` bytes): trickling a few bytes of every write through would
        // cut lines to shreds and mark each one.
        var bucket = buckets[domid] ?? TokenBucket(limits.rate, now: now)
        let wanted = Int(min(UInt64(data.count), limits.rate.burst))
        let granted = bucket.timeUntilAvailable(wanted, now: now) == 0 ? bucket.take(wanted, now: now) : 0
        buckets[domid] = bucket
        // Bytes lost before this write are announced once the domain gets through again.
        if granted > 0, let lost = rateDropped.removeValue(forKey: domid) {
            flush(domid)
            append(domid, Array("[conch: \(lost) bytes dropped by the console_io rate limit]".utf8))
        }
        if granted < data.count { rateDropped[domid, default: 0] += data.count - granted }
        guard granted > 0 else { return }
        var line = partialLines[domid] ?? []
        for byte in data.prefix(granted) {
            // Xen drops non-printable characters from guest console output.
            if byte == UInt8(ascii: "\n") || line.count >= maxLine {
                append(domid, line)
                line.removeAll(keepingCapacity: true)
                if byte == UInt8(ascii: "\n") { continue }
            }
            if byte == UInt8(ascii: "\t") || (0x20...0x7e).contains(byte) { line.append(byte) }
        }
        partialLines[domid] = line
    }

    /// Flushes a domain's unterminated line (when it dies) and forgets its rate.
    mutating func flush(_ domid: DomID) {
        if let line = partialLines.removeValue(forKey: domid), !line.isEmpty { append(domid, line) }
    }

    /// The domain is gone: its bucket and counters go (its lines stay).
    mutating func forget(_ domid: DomID) {
        flush(domid)
        buckets[domid] = nil
        rateDropped[domid] = nil
    }

    mutating func clear() {
        lines.removeAll()
        domainLines.removeAll()
        byteCount = 0
    }

    /// One complete line of `domid`, with its prefix.
    private mutating func append(_ domid: DomID, _ text: [UInt8]) {
        let line = Array("(d\(domid.rawValue)) ".utf8) + text + [UInt8(ascii: "\n")]
        let sequence = firstSequence &+ UInt64(lines.count)
        lines.append(Line(domid: domid, bytes: line))
        byteCount += line.count
        domainLines[domid, default: (0, [])].bytes += line.count
        domainLines[domid]?.sequences.append(sequence)
        // Over its share: this domain's own oldest lines go first.
        while let own = domainLines[domid], own.bytes > limits.share, own.sequences.count > 1 {
            evict(own.sequences[0])
        }
        // Over capacity: the oldest lines go, whoever wrote them.
        while byteCount > limits.capacity, let oldest = lines.first {
            if !oldest.evicted { evict(firstSequence) }
            lines.removeFirst()
            firstSequence &+= 1
        }
        while lines.first?.evicted == true {
            lines.removeFirst()
            firstSequence &+= 1
        }
    }

    private mutating func evict(_ sequence: UInt64) {
        let index = Int(sequence &- firstSequence)
        guard lines.indices.contains(index), !lines[index].evicted else { return }
        let line = lines[index]
        lines[index].evicted = true
        lines[index].bytes = []
        byteCount -= line.bytes.count
        if let domid = line.domid {
            domainLines[domid]?.bytes -= line.bytes.count
            if domainLines[domid]?.sequences.first == sequence {
                domainLines[domid]?.sequences.removeFirst()
            } else {
                domainLines[domid]?.sequences.removeAll { $0 == sequence }
            }
            if domainLines[domid]?.sequences.isEmpty == true { domainLines[domid] = nil }
        }
    }
}
