//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/1.1 request to a server on this machine, as plain bytes: for the demo
/// and the tests to check `conch web` (and `--metrics`) the way curl would,
/// including requests a browser would never send.
public enum LoopbackHTTP {
    /// Sends `GET target` (the request line's target) with `headers` to
    /// 127.0.0.1:`port` and returns the whole answer, status line first: until the
    /// server closes, or — for an upgrade that holds the connection — until it has
    /// been quiet for a tenth of a second. Throws if nothing listens.
    public static func get(port: Int, _ target: String, headers: [String] = []) throws(Errno) -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(truncatingIfNeeded: port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        // SAFETY: `address` is a sockaddr_in on the stack, alive for the call, and the
        // length given is its own size.
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw Errno(rawValue: errno) }
        let close = headers.contains { $0.lowercased().hasPrefix("connection:") } ? [] : ["Connection: close"]
        let request = (["GET \(target) HTTP/1.1", "Host: 127.0.0.1:\(port)"] + headers + close + ["", ""])
            .joined(separator: "\r\n")
        guard writeAll(fd, Array(request.utf8)[...]) else { throw Errno(rawValue: errno) }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) > 0 else {
                if !answer.isEmpty { break }
                continue
            }
            let got = read(fd, &buffer, buffer.count)
            guard got > 0 else { break }
            answer += buffer[..<got]
            deadline = ContinuousClock.now + .seconds(10)
        }
        return String(decoding: answer, as: UTF8.self)
    }
}
