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
import WebConsole

#if canImport(Glibc)
import Glibc
#endif

struct WebCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "web",
        abstract: "Serve every guest's consoles and channels in a browser: a live dashboard and xterm.js terminals.",
        discussion: """
            Prints the URL to open, with its access token, as the first line of its output; \
            every request needs the token. Listens on loopback unless --listen says otherwise. \
            A browser tab attached to a console follows the rules of `conch console`: one \
            session per console, and a second one is offered to take it over. Needs xterm.js \
            from Debian's libjs-xterm and node-xterm. Examples:

              conch web
              conch web --listen 127.0.0.1:9000 --run-dir /tmp/conch
            """
    )

    @OptionGroup var runDirectoryOptions: RunDirectoryOptions
    @OptionGroup var hypervisorOptions: HypervisorOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: "HOST:PORT to listen on (port 0: any free port).")
    var listen = "127.0.0.1:8080"

    @Option(help: "xterm.js's CommonJS modules (Debian's node-xterm).")
    var xtermModules = XtermBundle.defaultModules

    @Option(help: "xterm.js's stylesheet (Debian's libjs-xterm).")
    var xtermStylesheet = XtermBundle.defaultStylesheet

    func validate() throws {
        guard ListenAddress(parsing: listen) != nil else {
            throw ValidationError("--listen takes HOST:PORT (127.0.0.1:8080, say), not '\(listen)'")
        }
    }

    func run() async throws {
        let address = ListenAddress(parsing: listen)!
        let logger = logging.makeLogger(label: "conch.web")
        let xterm: XtermBundle
        do {
            xterm = try XtermBundle(modules: xtermModules, stylesheet: xtermStylesheet)
        } catch {
            throw CLIError("\(error)")
        }
        // Fail now, not at the first click, when the stack is not there.
        try await HostConnection.open(runDirectoryOptions, hypervisorOptions).store.close()
        if !address.isLoopback {
            FileHandle.standardError.write(
                Data(
                    "conch web: listening on \(listen): anyone who can reach it and has the token can type into every console\n"
                        .utf8
                )
            )
        }
        let runDirectoryOptions = self.runDirectoryOptions
        let hypervisorOptions = self.hypervisorOptions
        let server = WebConsoleServer(
            host: address.host,
            port: address.port,
            token: .random(),
            xterm: xterm,
            logger: logger
        ) {
            try await HostConnection.open(runDirectoryOptions, hypervisorOptions)
        }
        try await server.run { url in
            // Unbuffered, whatever stdout is: a script waits for this line.
            _ = writeAll(STDOUT_FILENO, Array((url + "\n").utf8)[...])
        }
    }
}
