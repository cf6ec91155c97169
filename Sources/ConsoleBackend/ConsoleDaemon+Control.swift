//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ConsoleCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import SystemExtras
import XenABI
import XenHypervisor
import XenRing
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

final class StatsHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let daemon: ConsoleDaemon
    init(daemon: ConsoleDaemon) { self.daemon = daemon }
    func channelActive(context: ChannelHandlerContext) {
        let stats = daemon.assumeIsolated { $0.statistics() }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = (try? encoder.encode(stats)) ?? Data("{}".utf8)
        let channel = context.channel
        channel.writeAndFlush(channel.allocator.buffer(bytes: json)).whenComplete { _ in channel.close(promise: nil) }
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// The control socket: one request line, one answer, then the connection closes.
/// `history <domid>` answers with console 0's history (see
/// ``ConsoleDaemon/historyForAttach(_:)``), `release <domid>` stops serving the
/// domain (``ConsoleDaemon/stopServing(_:)``); anything else with an error line.
final class ControlHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let daemon: ConsoleDaemon
    private var line: [UInt8] = []
    init(daemon: ConsoleDaemon) { self.daemon = daemon }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        line += buffer.readBytes(length: buffer.readableBytes) ?? []
        guard let end = line.firstIndex(of: UInt8(ascii: "\n")) else {
            if line.count > 256 { answer(context, Array("error: request too long\n".utf8)) }
            return
        }
        let words = String(decoding: line[..<end], as: UTF8.self).split(separator: " ")
        if words.count == 2, words[0] == "release", let domid = UInt16(words[1]) {
            let channel = context.channel
            let daemon = self.daemon
            line.removeAll()
            Task {
                let answer =
                    if let served = await daemon.stopServing(DomID(domid)) {
                        "released domain \(domid): \(served) console(s) marked DISCONNECTED\n"
                    } else {
                        "error: domain \(domid) is not served\n"
                    }
                try? await channel.writeAndFlush(channel.allocator.buffer(bytes: Array(answer.utf8)))
                try? await channel.close()
            }
        } else if words.count == 2, words[0] == "history", let domid = UInt16(words[1]) {
            let channel = context.channel
            let daemon = self.daemon
            line.removeAll()
            Task {
                let history = await daemon.historyForAttach(DomID(domid))
                let bytes = history ?? Array("error: console 0 of domain \(domid) is not served\n".utf8)
                try? await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
                try? await channel.close()
            }
        } else {
            answer(context, Array("error: unknown request (expected: history DOMID or release DOMID)\n".utf8))
        }
    }

    private func answer(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        let channel = context.channel
        line.removeAll()
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).whenComplete { _ in channel.close(promise: nil) }
    }
}
