//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenstoreCore
import XenstoreWire

/// Drives the xenstore decoder and engine with arbitrary bytes, as four clients
/// would: two privileged (dom0 sockets) and two unprivileged guests (domids 5, 6).
///
/// Input format (so the fuzzer can reach deep states): repeated chunks of
/// `[selector][length][length bytes]`; the selector's low two bits pick the
/// connection, and the bytes are fed to that connection's decoder, split anywhere.
/// A selector with bit 7 set instead reports domain `5 + (selector & 1)` shut down.
///
/// Checked on every request: exactly one reply, with the request's req_id and
/// tx_id, whose type is the request's or ERROR with a name from the fixed table;
/// no trap anywhere. Violations call `fatalError`, which libFuzzer reports.
public enum XenstoreFuzzHarness {
    public static func run(_ data: UnsafeRawBufferPointer) {
        var engine = XenstoreEngine()
        var decoders = [XenstoreDecoder](repeating: XenstoreDecoder(), count: 4)
        let domains: [(DomID, Bool)] = [(.dom0, true), (.dom0, true), (DomID(5), false), (DomID(6), false)]
        for (index, (domid, privileged)) in domains.enumerated() {
            engine.connect(ConnectionID(UInt64(index)), domid: domid, privileged: privileged)
        }
        var offset = 0
        while offset + 2 <= data.count {
            let selector = data[offset]
            let length = Int(data[offset + 1])
            offset += 2
            if selector & 0x80 != 0 {
                _ = engine.domainShutdown(DomID(5 + UInt16(selector & 1)))
                continue
            }
            let end = min(data.count, offset + length)
            let chunk = UnsafeRawBufferPointer(rebasing: data[offset..<end])
            offset = end
            let connection = Int(selector & 3)
            guard case .needMoreData = decoders[connection].state else { continue }
            for message in decoders[connection].feed(chunk) {
                check(message, engine.handle(message, from: ConnectionID(UInt64(connection))), connection: connection)
            }
        }
    }

    private static func check(_ request: XenstoreMessage, _ effects: [XenstoreEffect], connection: Int) {
        var replies = 0
        for case .send(let to, let message) in effects where to == ConnectionID(UInt64(connection)) {
            if message.type == .watchEvent { continue }
            replies += 1
            guard message.reqID == request.reqID, message.txID == request.txID || request.type == .transactionStart
            else { fatalError("reply ids \(message.reqID)/\(message.txID) for request \(request)") }
            if message.type == .error {
                let name = String(decoding: message.payload.dropLast(), as: UTF8.self)
                guard XenstoreError.allCases.contains(where: { $0.name == name }), message.payload.last == 0 else {
                    fatalError("bad error reply \(message.payload) to \(request)")
                }
            } else if message.type != request.type {
                fatalError("reply type \(message.type) to \(request.type)")
            }
            guard message.payload.count <= XenstoreInterface.payloadMax else { fatalError("oversize reply") }
        }
        guard replies == 1 else { fatalError("\(replies) replies to \(request)") }
    }
}
