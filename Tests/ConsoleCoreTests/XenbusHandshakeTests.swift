//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Testing
import XenABI

@Suite("xenbus handshake: consoled's side")
struct ConsoleBackendHandshakeTests {
    typealias Machine = ConsoleBackendHandshake

    /// Every frontend value a guest can write (and none), from every progress.
    @Test func everyFrontendStateHasOneAnswer() {
        let frontends: [XenbusState?] = [nil] + XenbusState.allCases
        var table: [String] = []
        for progress in [Machine.Progress.idle, .sinkPublished, .connected] {
            for frontend in frontends {
                let step = Machine.step(frontend: frontend, progress: progress)
                if step != .wait { table.append("\(progress) \(frontend.map { "\($0)" } ?? "-") → \(step)") }
            }
        }
        #expect(
            table == [
                "idle Initialising → publishSink", "idle InitWait → publishSink",
                "idle Initialised → connect", "idle Connected → connect",
                "sinkPublished Initialised → connect", "sinkPublished Connected → connect",
                "sinkPublished Closing → discardSink", "sinkPublished Closed → discardSink",
                "connected Closing → close", "connected Closed → close",
            ]
        )
    }

    @Test func aChannelWalksInitWaitConnectedClosed() {
        var progress = Machine.Progress.idle
        var backend: XenbusState? = .initialising
        func advance(frontend: XenbusState) -> Machine.Step {
            let step = Machine.step(frontend: frontend, progress: progress)
            if let next = Machine.backendState(after: step, current: backend) { backend = next }
            switch step {
            case .publishSink: progress = .sinkPublished
            case .connect: progress = .connected
            case .close, .discardSink: progress = .idle
            case .wait: break
            }
            return step
        }
        #expect(advance(frontend: .initialising) == .publishSink)
        #expect(backend == .initWait)
        #expect(advance(frontend: .initialising) == .wait, "a second watch event publishes nothing twice")
        #expect(advance(frontend: .initialised) == .connect)
        #expect(backend == .connected)
        #expect(advance(frontend: .connected) == .wait, "the guest confirming changes nothing")
        #expect(advance(frontend: .closing) == .close)
        #expect(backend == .closed)
        #expect(advance(frontend: .closed) == .wait)
    }

    @Test func initWaitNeverMovesABackendBack() {
        #expect(Machine.backendState(after: .publishSink, current: .initialising) == .initWait)
        for current in [XenbusState.initWait, .connected, .closed, .unknown] {
            #expect(Machine.backendState(after: .publishSink, current: current) == nil, "from \(current)")
        }
        #expect(Machine.backendState(after: .publishSink, current: nil) == nil)
    }

    @Test func aRemovedDeviceIsClosedWithoutWritingItsState() {
        #expect(Machine.stepForRemovedDevice(progress: .connected) == .close)
        #expect(Machine.stepForRemovedDevice(progress: .sinkPublished) == .discardSink)
        #expect(Machine.stepForRemovedDevice(progress: .idle) == .wait)
        #expect(Machine.backendState(after: .discardSink, current: .initWait) == nil)
    }
}

@Suite("xenbus handshake: the guest's side")
struct ConsoleFrontendHandshakeTests {
    typealias Machine = ConsoleFrontendHandshake

    @Test func theGuestOffersItsRingOnlyOnceAndOnlyFromInitialising() {
        #expect(Machine.step(frontend: .initialising, backend: nil, progress: .absent) == .offerRing)
        #expect(Machine.step(frontend: .initialising, backend: .initWait, progress: .absent) == .offerRing)
        for frontend in XenbusState.allCases where frontend != .initialising {
            #expect(Machine.step(frontend: frontend, backend: .initWait, progress: .absent) == .wait, "\(frontend)")
        }
        #expect(Machine.step(frontend: .initialised, backend: .initWait, progress: .ringOffered) == .wait)
        #expect(Machine.frontendState(after: .offerRing) == .initialised)
    }

    @Test func theGuestConnectsOnlyAfterTheBackendDoes() {
        for backend in XenbusState.allCases {
            let step = Machine.step(frontend: .initialised, backend: backend, progress: .ringOffered)
            switch backend {
            case .connected: #expect(step == .connect)
            case .closing, .closed: #expect(step == .close)
            default: #expect(step == .wait, "backend \(backend)")
            }
        }
        #expect(Machine.step(frontend: .connected, backend: .connected, progress: .connected) == .wait)
        #expect(Machine.frontendState(after: .connect) == .connected)
    }

    @Test func aClosingBackendClosesTheDeviceWhereverTheGuestIs() {
        for progress in [Machine.Progress.ringOffered, .connected] {
            #expect(Machine.step(frontend: .connected, backend: .closing, progress: progress) == .close)
            #expect(Machine.step(frontend: .initialised, backend: .closed, progress: progress) == .close)
        }
        #expect(Machine.step(frontend: .closed, backend: .closed, progress: .absent) == .wait)
        #expect(Machine.frontendState(after: .close) == .closed)
    }
}
