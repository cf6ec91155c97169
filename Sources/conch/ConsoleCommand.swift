//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import ArgumentParser
import Foundation
import SystemExtras
import ToolstackRuntime
import XenABI
import XenHypervisor

#if canImport(Glibc)
import Glibc
#endif

struct ConsoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Attach to a domain's console 0, console N or a channel (like xl console).",
        discussion: """
            On a terminal: raw mode, and the escape key typed alone (Ctrl-] unless -e says \
            otherwise) detaches. One session per console: a second is refused unless --force \
            takes the console over. If consoled restarts, the session follows it to the new pty. \
            Without a terminal (a script): stdin goes to the console and output comes out on \
            stdout; after stdin ends, output is relayed until the console has been quiet for \
            --linger seconds. pty and socket channels behave the same. Examples:

              conch console web-1
              conch console web-1 --channel org.conch.provision.0
              echo status | conch console web-1 -n 2
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @OptionGroup var hypervisorOptions: HypervisorOptions

    @Argument(help: "The domain: a name or a domid.", completion: .domainNames)
    var domain: String

    @Option(name: .shortAndLong, help: "Console number (0: the primary console).")
    var number: Int?

    @Option(help: "A channel, by name.", completion: .channelNames)
    var channel: String?

    @Option(help: "Without a terminal: seconds of quiet after stdin ends before exiting.")
    var linger: Double = 1

    @Option(
        name: [.customShort("e"), .long],
        help: "The key that detaches when typed alone: ^] (the default), ^A, a character, or none."
    )
    var escape: String = "^]"

    @Flag(help: "Take the console over from another session attached to it.")
    var force = false

    @Flag(help: "Show the guest's ESC bytes as '.': its escape sequences cannot drive your terminal.")
    var replaceEscape = false

    func validate() throws {
        if number != nil, channel != nil { throw ValidationError("give -n or --channel, not both") }
        if let number, number < 0 { throw ValidationError("-n must be 0 or more") }
        if ConsoleAttachment.Options.escape(parsing: escape) == nil {
            throw ValidationError("-e takes ^X (caret notation), one character, or none; not '\(escape)'")
        }
    }

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions, hypervisorOptions)
        let target = try await host.guest(domain)
        let which: ConsoleAttachment.Target =
            if let channel { .channel(channel) } else if let number, number > 0 { .secondary(number) } else { .primary }
        let options = ConsoleAttachment.Options(
            linger: linger,
            escape: ConsoleAttachment.Options.escape(parsing: escape) ?? ConsoleAttachment.Options.defaultEscape,
            force: force,
            replaceEscape: replaceEscape
        )
        try await ConsoleAttachment.attach(host: host, domain: target, target: which, options: options)
    }
}

/// `conch console-release`: consoled stops serving a domain for good.
struct ConsoleRelease: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console-release",
        abstract: "Make consoled stop serving a domain's consoles and channels, and say so to its guest.",
        discussion: """
            A consoled that stops or restarts leaves every ring CONNECTED: the ring keeps what \
            the guest writes and the next consoled delivers it (a Linux 7.1 guest drops writes \
            while its page says DISCONNECTED). This command is the other case: the backend goes \
            away for good. consoled marks the domain's rings DISCONNECTED, closes their sinks \
            and leaves the domain alone until it is destroyed.
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @OptionGroup var hypervisorOptions: HypervisorOptions

    @Argument(help: "The domain: a name or a domid.", completion: .domainNames)
    var domain: String

    func run() async throws {
        let host = try await HostConnection.open(runDirectoryOptions, hypervisorOptions)
        let target = try await host.guest(domain)
        let answer = try readAll(
            fromSocket: host.runDirectory.consoledControlSocket,
            request: "release \(target.domid.rawValue)\n"
        )
        let text = String(decoding: answer, as: UTF8.self)
        if text.hasPrefix("error:") || text.isEmpty {
            throw CLIError(text.isEmpty ? "consoled did not answer" : String(text.dropFirst(7).dropLast()))
        }
        print(text, terminator: "")
    }
}
