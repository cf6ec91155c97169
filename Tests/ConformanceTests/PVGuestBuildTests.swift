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
import XenTestKit

/// conch-pv-guest builds with Embedded Swift from Conch's own cores, and what it
/// builds is a kernel Xen's domain builder accepts: a 64-bit x86 ELF whose Xen
/// notes name the entry point and a page-aligned hypercall page. (The rig's
/// `matrix` scenario boots it on Xen.) A core that stops building for the
/// embedded target fails here, in the ordinary test run.
@Suite("conch-pv-guest build")
struct PVGuestBuildTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The ELF notes named "Xen": type → descriptor.
    static func xenNotes(_ elf: [UInt8]) throws -> [UInt32: [UInt8]] {
        func u16(_ at: Int) -> Int { Int(elf[at]) | Int(elf[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        func u64(_ at: Int) -> Int { u32(at) | u32(at + 4) << 32 }
        try #require(elf.count > 64 && elf[0..<4] == [0x7f, 0x45, 0x4c, 0x46], "not an ELF file")
        try #require(elf[4] == 2, "not a 64-bit ELF")
        try #require(u16(18) == 62, "not x86-64")
        let programHeaders = u64(32)
        let entrySize = u16(54)
        var notes: [UInt32: [UInt8]] = [:]
        for index in 0..<u16(56) {
            let header = programHeaders + index * entrySize
            guard u32(header) == 4 else { continue }  // PT_NOTE
            var offset = u64(header + 8)
            let end = offset + u64(header + 32)
            while offset + 12 <= end {
                let nameSize = u32(offset)
                let descriptorSize = u32(offset + 4)
                let type = UInt32(u32(offset + 8))
                let name = elf[(offset + 12)..<(offset + 12 + nameSize)]
                let descriptor = offset + 12 + (nameSize + 3) / 4 * 4
                if Array(name) == Array("Xen\0".utf8) {
                    notes[type] = Array(elf[descriptor..<(descriptor + descriptorSize)])
                }
                offset = descriptor + (descriptorSize + 3) / 4 * 4
            }
        }
        return notes
    }

    @Test func buildsAndCarriesXensNotes() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let output = scratch.path + "/conch-pv-guest"
        let build = try runProgram(
            Self.repository.appendingPathComponent("guest/pv/build.sh").path,
            [output],
            timeout: 600
        )
        try #require(build.status == 0, "guest/pv/build.sh failed:\n\(build.stderr)\(build.stdout)")
        let elf = try [UInt8](Data(contentsOf: URL(fileURLWithPath: output)))
        let notes = try Self.xenNotes(elf)
        func text(_ type: UInt32) -> String? {
            notes[type].map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        func address(_ type: UInt32) -> Int? {
            notes[type].map { $0.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) } }
        }
        #expect(text(6) == "Conch")  // XEN_ELFNOTE_GUEST_OS
        #expect(text(8) == "generic")  // XEN_ELFNOTE_LOADER
        #expect(text(5) == "xen-3.0")  // XEN_ELFNOTE_XEN_VERSION
        let entry = elf[24..<32].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(address(1) == entry, "XEN_ELFNOTE_ENTRY is the ELF entry point")
        let hypercallPage = try #require(address(2), "no XEN_ELFNOTE_HYPERCALL_PAGE")
        #expect(hypercallPage % 4096 == 0, "the hypercall page is page-aligned")
        #expect(address(3) == 0, "XEN_ELFNOTE_VIRT_BASE")
    }
}
