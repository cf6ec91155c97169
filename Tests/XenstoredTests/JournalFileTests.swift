//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Testing
import XenABI
import XenstoreCore
import XenstoreWire

@testable import XenstoreServer

/// The journal file on its own: records copied into a shared mapping must be what
/// the next daemon reads, whatever state the last one died in.
@Suite("xenstored: the journal file")
struct JournalFileTests {
    static func scratchPath() -> String {
        let directory = NSTemporaryDirectory() + "conch-journal-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory + "/journal"
    }

    static func write(_ index: Int, value: Int = 8) -> JournalEntry {
        let path = Array("/local/domain/0/n\(index)".utf8) + [0]
        let message = XenstoreMessage(
            type: .write,
            reqID: UInt32(index),
            txID: 0,
            payload: path + [UInt8](repeating: UInt8(ascii: "v"), count: value)
        )
        return .request(ConnectionID(1), message)
    }

    /// A daemon killed without closing its journal: the next one reads every record.
    @Test func recordsAreReadBackWithoutAClose() throws {
        let path = Self.scratchPath()
        let (first, recovered) = try JournalFile.open(path: path)
        #expect(recovered.isEmpty)
        let entries =
            [JournalEntry.connect(ConnectionID(1), domid: .dom0, privileged: true, persistent: false)]
            + (0..<50).map { Self.write($0) }
        for entry in entries { first.append(entry) }
        #expect(first.failed == nil)
        let (_, read) = try JournalFile.open(path: path)
        #expect(read == entries)
        withExtendedLifetime(first) {}
    }

    /// The file is reserved ahead of the records, zero-filled: the zeros are not
    /// records, and a body whose length was never stored (a death mid-append) ends
    /// the journal there.
    @Test func aRecordWithoutItsLengthEndsTheJournal() throws {
        let path = Self.scratchPath()
        let kept = (0..<3).map { Self.write($0) }
        do {
            let (journal, _) = try JournalFile.open(path: path)
            for entry in kept { journal.append(entry) }
        }
        let size = kept.reduce(0) { $0 + $1.encoded().count }
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.size] as? Int ?? 0) >= JournalFile.reservationStep, "the space ahead is not reserved")
        // A fourth record's body, its length still zero.
        let torn = Array(Self.write(3).encoded().dropFirst(4))
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(size + 4))
        try handle.write(contentsOf: torn)
        try handle.close()
        let (_, read) = try JournalFile.open(path: path)
        #expect(read == kept)
    }

    /// More than one reservation's worth of records: the mapping grows and nothing
    /// written before the growth is lost.
    @Test func recordsPastTheFirstReservationAreKept() throws {
        let path = Self.scratchPath()
        let (journal, _) = try JournalFile.open(path: path)
        let entries = (0..<600).map { Self.write($0, value: 3000) }
        for entry in entries { journal.append(entry) }
        #expect(journal.size > JournalFile.reservationStep)
        #expect(journal.failed == nil)
        let (_, read) = try JournalFile.open(path: path)
        let same = read == entries
        #expect(same, "read back \(read.count) of \(entries.count) records, or different ones")
        withExtendedLifetime(journal) {}
    }

    /// After a snapshot replaces the file, appends go to the new file.
    @Test func appendsAfterASnapshotFollowIt() throws {
        let path = Self.scratchPath()
        let (journal, _) = try JournalFile.open(path: path)
        for index in 0..<20 { journal.append(Self.write(index)) }
        let snapshot = [JournalEntry.connect(ConnectionID(7), domid: DomID(3), privileged: false, persistent: true)]
        try journal.replace(with: snapshot)
        let later = (100..<110).map { Self.write($0) }
        for entry in later { journal.append(entry) }
        let (_, read) = try JournalFile.open(path: path)
        #expect(read == snapshot + later)
        withExtendedLifetime(journal) {}
    }
}
