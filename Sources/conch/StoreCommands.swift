//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Foundation
import XenABI
import XenstoreClient
import XenstoreWire

struct Store: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read and change xenstore, like Xen's xenstore-* tools.",
        discussion: """
            Same arguments and output as xenstore-read, -write, -ls, -list, -rm, -exists, \
            -watch and -chmod. On failure a command prints the error name and exits 1. The \
            daemon is found through --socket, else --run-dir, else $XENSTORED_PATH, else \
            the default run directory. Example:

              conch store write /local/domain/1/name web
              conch store ls /local/domain/1
            """,
        subcommands: [
            StoreRead.self, StoreWrite.self, StoreLs.self, StoreList.self, StoreRm.self, StoreMkdir.self,
            StoreExists.self, StoreWatch.self, StoreChmod.self, StoreGetPerms.self,
        ]
    )
}

/// Where to find xenstored, shared by every `conch store` command.
struct StoreConnectionOptions: ParsableArguments {
    @OptionGroup var runDirectoryOptions: RunDirectoryOptions

    @Option(name: .customLong("socket"), help: "xenstored's socket (overrides --run-dir and $XENSTORED_PATH).")
    var socketPath: String?

    @Flag(name: .customShort("s"), help: "Accepted for compatibility with xenstore-* (always a socket here).")
    var useSocket = false

    var resolvedSocketPath: String {
        if let socketPath { return socketPath }
        if runDirectoryOptions.explicitPath == nil, let env = XenstoreClient.currentEnvironment()["XENSTORED_PATH"],
            !env.isEmpty
        {
            return env
        }
        return runDirectoryOptions.runDirectory.xenstoredSocket
    }

    func connect() async throws -> XenstoreClient {
        let path = resolvedSocketPath
        do {
            return try await XenstoreClient.connect(socketPath: path)
        } catch {
            throw XenstoreToolFailure(
                "cannot connect to xenstored at \(path): \(error) (is `conch xenstored` or `conch up` running?)"
            )
        }
    }

    /// Runs `body`, in a transaction when `transactional` (retried on EAGAIN, as
    /// the xenstore tools do); prints what it collected at the end either way.
    func perform(
        transactional: Bool,
        _ body: (XenstoreClient, XenstoreTransaction, inout String) async throws -> Void
    ) async throws {
        let client = try await connect()
        defer { client.close() }
        var output = ""
        defer { FileHandle.standardOutput.write(Data(output.utf8)) }
        guard transactional else { return try await body(client, .none, &output) }
        try await client.transaction { transaction in
            output = ""
            try await body(client, transaction, &output)
        }
    }
}

/// Runs a command body and turns failures into "conch store X: message" plus exit 1.
private func reportingFailures(_ command: String, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let failure as XenstoreToolFailure {
        FileHandle.standardError.write(Data("conch store \(command): \(failure)\n".utf8))
        throw ExitCode(1)
    } catch let error as XenstoreClientError {
        FileHandle.standardError.write(Data("conch store \(command): \(error)\n".utf8))
        throw ExitCode(1)
    }
}

struct StoreRead: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read",
        abstract: "Print the values of keys (like xenstore-read).",
        discussion: "Example: conch store read -p /local/domain/0/name"
    )
    @OptionGroup var connection: StoreConnectionOptions
    @Flag(name: .short, help: "Prefix each value with its key.") var prefix = false
    @Flag(name: .customShort("R"), help: "Print raw values, without escaping.") var raw = false
    @Argument(help: "Keys to read.") var keys: [String]

    func run() async throws {
        try await reportingFailures("read") {
            try await connection.perform(transactional: keys.count > 1) { client, transaction, output in
                for key in keys {
                    let value: [UInt8]
                    do {
                        value = try await client.read(key, transaction: transaction)
                    } catch {
                        throw error.toolFailure("couldn't read path \(key)")
                    }
                    if prefix { output += "\(key): " }
                    output +=
                        (raw ? String(decoding: value, as: UTF8.self) : XenstoreValueEscaping.escape(value)) + "\n"
                }
            }
        }
    }
}

struct StoreWrite: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write",
        abstract: "Write key/value pairs (like xenstore-write; values may use \\t \\n \\xHH escapes).",
        discussion: "Example: conch store write /local/domain/1/name web /local/domain/1/memory 512"
    )
    @OptionGroup var connection: StoreConnectionOptions
    @Flag(name: .customShort("R"), help: "Write values raw, without unescaping.") var raw = false
    @Argument(help: "key value [key value …]") var pairs: [String]

    func validate() throws {
        guard !pairs.isEmpty, pairs.count % 2 == 0 else { throw ValidationError("expected key value pairs") }
    }

    func run() async throws {
        try await reportingFailures("write") {
            try await connection.perform(transactional: pairs.count > 2) { client, transaction, _ in
                for index in stride(from: 0, to: pairs.count, by: 2) {
                    let key = pairs[index]
                    let value = raw ? Array(pairs[index + 1].utf8) : XenstoreValueEscaping.unescape(pairs[index + 1])
                    do {
                        try await client.write(key, value, transaction: transaction)
                    } catch {
                        throw error.toolFailure("could not write path \(key)")
                    }
                }
            }
        }
    }
}

struct StoreLs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "Print a subtree with values (like xenstore-ls).",
        discussion: "Example: conch store ls -f /local/domain"
    )
    @OptionGroup var connection: StoreConnectionOptions
    @Flag(name: .short, help: "Print full paths.") var full = false
    @Flag(name: .short, help: "Print permissions.") var permissions = false
    @Argument(help: "Path (default /).") var path: String = "/"

    func run() async throws {
        try await reportingFailures("ls") {
            var size = winsize()
            let terminal = ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 ? Int(size.ws_col) : nil
            let layout = XenstoreListingLayout(terminalWidth: terminal, fullPaths: full, showPermissions: permissions)
            try await connection.perform(transactional: false) { client, _, output in
                try await client.list(path, layout: layout, into: &output)
            }
        }
    }
}

struct StoreList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Print the children of keys (like xenstore-list).",
        discussion: "Example: conch store list /local/domain"
    )
    @OptionGroup var connection: StoreConnectionOptions
    @Flag(name: .short, help: "Prefix each child with its parent key.") var prefix = false
    @Argument(help: "Keys to list.") var keys: [String]

    func run() async throws {
        try await reportingFailures("list") {
            try await connection.perform(transactional: true) { client, transaction, output in
                for key in keys {
                    let children: [String]
                    do {
                        children = try await client.directory(key, transaction: transaction)
                    } catch {
                        throw error.toolFailure("could not list path \(key)")
                    }
                    for child in children { output += (prefix ? "\(key)/" : "") + child + "\n" }
                }
            }
        }
    }
}

struct StoreRm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove keys and their subtrees (like xenstore-rm).",
        discussion: "Example: conch store rm -t /local/domain/1/data/scratch"
    )
    @OptionGroup var connection: StoreConnectionOptions
    @Flag(name: .short, help: "Also remove parents left empty and valueless.") var tidy = false
    @Argument(help: "Keys to remove.") var keys: [String]

    func run() async throws {
        try await reportingFailures("rm") {
            try await connection.perform(transactional: true) { client, transaction, _ in
                for key in keys { try await client.remove(key, tidy: tidy, transaction: transaction) }
            }
        }
    }
}

struct StoreMkdir: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mkdir",
        abstract: "Create keys with empty values; existing keys are left as they are.",
        discussion: "Example: conch store mkdir /local/domain/1/data"
    )
    @OptionGroup var connection: StoreConnectionOptions
    @Argument(help: "Keys to create.") var keys: [String]

    func run() async throws {
        try await reportingFailures("mkdir") {
            try await connection.perform(transactional: keys.count > 1) { client, transaction, _ in
                for key in keys {
                    do {
                        try await client.mkdir(key, transaction: transaction)
                    } catch {
                        throw error.toolFailure("could not create path \(key)")
                    }
                }
            }
        }
    }
}

struct StoreExists: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exists",
        abstract: "Exit 0 if every key exists, 1 otherwise (like xenstore-exists).",
        discussion: "Example: conch store exists /local/domain/1 && echo present"
    )
    @OptionGroup var connection: StoreConnectionOptions
    @Argument(help: "Keys to test.") var keys: [String]

    func run() async throws {
        var missing = false
        try await reportingFailures("exists") {
            try await connection.perform(transactional: true) { client, transaction, _ in
                for key in keys where try await !client.exists(key, transaction: transaction) {
                    missing = true
                    return
                }
            }
        }
        if missing { throw ExitCode(1) }
    }
}

struct StoreWatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Print the path of every change under keys (like xenstore-watch).",
        discussion: """
            The first line for each key is the immediate event every watch delivers. Example:

              conch store watch -n 2 /local/domain/1/device
            """
    )
    @OptionGroup var connection: StoreConnectionOptions
    @Option(name: .short, help: "Exit after this many events.") var number: Int?
    @Argument(help: "Keys to watch.") var keys: [String]

    func run() async throws {
        try await reportingFailures("watch") {
            let client = try await connection.connect()
            defer { client.close() }
            let events = AsyncStream<XenstoreWatchEvent>.makeStream()
            for key in keys {
                let stream: AsyncStream<XenstoreWatchEvent>
                do {
                    stream = try await client.watch(key, token: key)
                } catch {
                    throw error.toolFailure("Unable to add watch on \(key)")
                }
                Task {
                    for await event in stream { events.continuation.yield(event) }
                    events.continuation.finish()
                }
            }
            var seen = 0
            for await event in events.stream {
                FileHandle.standardOutput.write(Data("\(event.path)\n".utf8))
                seen += 1
                if let number, seen >= number { return }
            }
            throw XenstoreToolFailure("connection to xenstored closed")
        }
    }
}

struct StoreChmod: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chmod",
        abstract: "Set a key's permissions (like xenstore-chmod): owner first, then n|r|w|b<domid>…",
        discussion: "Example: conch store chmod /local/domain/1/data n1 r0"
    )
    @OptionGroup var connection: StoreConnectionOptions
    @Flag(name: .short, help: "Apply to every parent up to the root as well.") var upto = false
    @Flag(name: .short, help: "Apply to every child recursively.") var recurse = false
    @Argument(help: "The key.") var key: String
    @Argument(help: "Permissions, owner first, e.g. n1 r0.") var modes: [String]

    func validate() throws {
        guard !modes.isEmpty else { throw ValidationError("at least one permission is required") }
        for mode in modes where XenstorePermission(mode) == nil {
            throw ValidationError("Invalid permission specification: '\(mode)'")
        }
    }

    func run() async throws {
        let entries = modes.compactMap(XenstorePermission.init)
        guard let permissions = XenstorePermissions(entries: entries) else {
            throw ValidationError("invalid permission list")
        }
        try await reportingFailures("chmod") {
            try await connection.perform(transactional: true) { client, transaction, _ in
                try await client.setPermissions(
                    key,
                    permissions,
                    transaction: transaction,
                    upto: upto,
                    recurse: recurse
                )
            }
        }
    }
}

struct StoreGetPerms: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "getperms",
        abstract: "Print keys' permissions, owner first, as xenstore-ls -p shows them.",
        discussion: "Example: conch store getperms /local/domain/1"
    )
    @OptionGroup var connection: StoreConnectionOptions
    @Flag(name: .short, help: "Prefix each line with its key.") var prefix = false
    @Argument(help: "Keys.") var keys: [String]

    func run() async throws {
        try await reportingFailures("getperms") {
            try await connection.perform(transactional: keys.count > 1) { client, transaction, output in
                for key in keys {
                    let permissions: XenstorePermissions
                    do {
                        permissions = try await client.permissions(key, transaction: transaction)
                    } catch {
                        throw error.toolFailure("could not access permissions for \(key)")
                    }
                    if prefix { output += "\(key): " }
                    output += permissions.entries.map(\.description).joined(separator: " ") + "\n"
                }
            }
        }
    }
}
