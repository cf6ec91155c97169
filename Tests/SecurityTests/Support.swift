//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Toolstack
import ToolstackRuntime
import XenHypervisor
import XenTestKit
import XenstoreClient

#if canImport(Glibc)
import Glibc
#endif

/// A stack (hypervisor, xenstored, consoled) and ways to put guests on it.
struct Hostile {
    let host: HostStack
    let store: XenstoreClient

    static func start(consoled: Bool = true) async throws -> Hostile {
        let host = try HostStack(xenstored: true)
        if consoled { try host.startConsoled() }
        return Hostile(host: host, store: try await XenstoreClient.connect(socketPath: host.xenstoredSocket))
    }

    func stop() {
        store.close()
        host.stop()
    }

    /// Builds and unpauses a domain from xl.cfg text; `guestKernel` runs the kernel
    /// under Conch's guest kernel (channels become devices), else it runs alone.
    @discardableResult
    func create(_ text: String, guestKernel: Bool) async throws -> DomainBuilder.Built {
        let configuration = try DomainConfiguration.parse(text, fileName: "test.cfg").configuration
        let builder = DomainBuilder(hypervisor: try host.privilegedHypervisor(), store: store)
        let kernel = guestKernel ? [try ConchExecutable.path(), "guest-kernel"] : nil
        let built = try await builder.build(configuration, guestKernel: kernel)
        try host.privilegedHypervisor().unpause(built.domain.domid)
        return built
    }

    /// A configuration whose kernel is `conch-test-guest SCENARIO ARGUMENTS…`.
    static func testGuest(
        _ name: String,
        _ scenario: String,
        _ arguments: [String] = [],
        extra: String = ""
    ) throws
        -> String
    {
        let words = ([scenario] + arguments).map { "\\\"\($0)\\\"" }.joined(separator: " ")
        return """
            name = "\(name)"
            kernel = "\(try ConchExecutable.testGuestPath())"
            cmdline = "\(words)"
            \(extra)
            """
    }

    /// `key=value` lines a test guest printed.
    func report(_ name: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in host.guestOutput(name).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            result[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return result
    }
}

/// Runs `python3 -c SCRIPT ARGUMENTS…` as a process outside the host's toolstack:
/// another uid when the tests run as root (the daemons' sockets are made
/// reachable to it first), else the same uid in a user namespace of its own —
/// what a guest is. Returns its standard output.
func runAsForeignPeer(_ script: String, _ arguments: [String]) throws -> String {
    let wrapper: [String]
    if geteuid() == 0 {
        wrapper = [
            "/usr/bin/setpriv", "--reuid=1999999999", "--regid=1999999999", "--clear-groups", "/usr/bin/python3",
        ]
    } else {
        wrapper = ["/usr/bin/unshare", "--user", "/usr/bin/python3"]
    }
    let result = try runProgram(wrapper[0], Array(wrapper.dropFirst()) + ["-c", script] + arguments)
    return result.stdout + result.stderr
}

/// A Python client that connects to a Unix socket, sends bytes (hex), and
/// prints `answered` if anything comes back, `refused: …` otherwise.
let probeScript = """
    import socket, sys
    path, kind, payload = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET if kind == "seqpacket" else socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(path)
        if payload:
            s.send(payload)
        data = s.recv(65536)
        print("answered " + data[:60].hex() if data else "refused: closed")
    except socket.timeout:
        print("open: the connection was kept")
    except Exception as e:
        print("refused: " + repr(e))
    """

struct ConchFailed: Error, CustomStringConvertible {
    let description: String
}
