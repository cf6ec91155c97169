//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import Toolstack

@Suite("xl channel-list formatting (§6.2)")
struct ChannelListTests {
    /// Written out by hand from `%-3s %-2s %-5s %-6s %8s %-10s %-30s\n`.
    static let header = "Idx BE state evt-ch ring-ref connection " + String(repeating: " ", count: 30) + "\n"

    @Test func headerIsExact() {
        #expect(ChannelList.header == Self.header)
        #expect(ChannelList.format([]) == Self.header)
    }

    @Test func ptyAndSocketRows() {
        let rows = [
            ChannelListEntry(
                index: 0,
                backendID: 0,
                state: 4,
                eventChannel: 23,
                ringRef: 8,
                connection: .pty,
                ptyPath: "/dev/pts/7"
            ),
            ChannelListEntry(index: 1, backendID: 3, state: 1, eventChannel: nil, ringRef: nil, connection: .socket),
        ]
        let expected =
            Self.header
            + "0   0  4     23     8        pty        /dev/pts/7                     \n"
            + "1   3  1     -1     -1       socket     \n"
        #expect(ChannelList.format(rows) == expected)
    }

    @Test func missingValuesAndUnknownConnection() {
        let row = ChannelListEntry(
            index: 12,
            backendID: nil,
            state: nil,
            eventChannel: nil,
            ringRef: nil,
            connection: .unknown
        )
        #expect(ChannelList.row(row) == "12  -1 -1    -1     -1       unknown    \n")
        let pty = ChannelListEntry(index: 0, backendID: 0, state: 1, eventChannel: 5, ringRef: 9, connection: .pty)
        #expect(ChannelList.row(pty) == "0   0  1     5      9        pty        /NO-SUCH-PATH                  \n")
    }

    @Test func wideValuesAreNotCut() {
        let row = ChannelListEntry(
            index: 1234,
            backendID: 32000,
            state: 123456,
            eventChannel: 1_234_567,
            ringRef: 123_456_789,
            connection: .socket
        )
        #expect(ChannelList.row(row) == "1234 32000 123456 1234567 123456789 socket     \n")
    }

    @Test func entryFromFrontendNodes() {
        let entry = ChannelListEntry(
            index: 0,
            backendPath: "/local/domain/0/backend/console/5/1",
            frontendNodes: ["backend-id": "7", "state": "4", "port": "31", "ring-ref": "12x", "tty": "/dev/pts/3"],
            connection: "pty"
        )
        #expect(
            entry
                == ChannelListEntry(
                    index: 0,
                    backendID: 0,
                    state: 4,
                    eventChannel: 31,
                    ringRef: 12,
                    connection: .pty,
                    ptyPath: "/dev/pts/3"
                )
        )
        // The guest's own `backend-id` is never believed; a backend path that is not
        // one (a guest could not have written it, but check anyway) gives -1.
        let sparse = ChannelListEntry(
            index: 2,
            backendPath: "/local/domain/0/backend/vif/5/1",
            frontendNodes: ["state": "junk", "backend-id": "0"],
            connection: "serial"
        )
        #expect(
            sparse
                == ChannelListEntry(
                    index: 2,
                    backendID: nil,
                    state: 0,
                    eventChannel: nil,
                    ringRef: nil,
                    connection: .unknown
                )
        )
    }
}
