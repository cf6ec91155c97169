//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import XenABI

@Suite("XenABI values")
struct ABITests {
    @Test func errorTableOrderIsFixed() {
        #expect(
            XenstoreError.allCases.map(\.name) == [
                "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
                "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
            ]
        )
        #expect(XenstoreError(wireName: "EAGAIN") == .EAGAIN)
        #expect(XenstoreError(wireName: "EWHATEVER") == .EINVAL, "unknown names map to EINVAL")
        #expect(XenstoreError(errno: 2) == .ENOENT)
        #expect(XenstoreError(errno: 9999) == .EINVAL)
    }

    @Test func messageTypesAreNumberedInOrder() {
        #expect(XenstoreMessageType.allNamed.count == 27)
        for (index, entry) in XenstoreMessageType.allNamed.enumerated() {
            #expect(entry.0.rawValue == UInt32(index))
        }
        #expect(XenstoreMessageType.watchEvent.description == "WATCH_EVENT")
        #expect(XenstoreMessageType(rawValue: 99).description == "UNKNOWN(99)")
    }

    @Test func xenbusStateParsesNodeValues() {
        #expect(XenbusState(nodeValue: "4") == .connected)
        #expect(XenbusState(nodeValue: "9") == nil)
        #expect(XenbusState(nodeValue: "x") == nil)
        #expect(XenbusState.allCases.map(\.rawValue) == Array(0...8))
    }

    @Test func grantEntryGeometry() {
        #expect(GrantEntryV1.perPage == 512)
        #expect(GrantFlags([.permitAccess, .readOnly]).rawValue == 5)
        #expect(GrantFlags([.permitAccess, .readOnly]).type == 1)
    }
}
