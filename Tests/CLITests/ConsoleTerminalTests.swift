//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras
import Testing
import XenTestKit

/// `conch console` on a real terminal (a pty pair: the test holds the master,
/// conch gets the slave as stdin, stdout and stderr), as an operator types at it.
@Suite("conch console on a terminal")
struct ConsoleTerminalTests {
    /// A client of `conch console` on a terminal of its own.
    final class Client {
        let terminal: PseudoTerminal
        let process: ChildProcess
        private var received: [UInt8] = []

        init(_ arguments: [String]) throws {
            terminal = try PseudoTerminal(.terminal)
            process = try ChildProcess(
                executable: try ConchExecutable.path(),
                arguments: ["console"] + arguments,
                descriptors: [0: terminal.slave, 1: terminal.slave, 2: terminal.slave]
            )
        }

        /// Everything the client wrote to its terminal so far.
        var output: String { String(decoding: received, as: UTF8.self) }

        func type(_ text: String) { _ = writeAll(terminal.master.rawValue, Array(text.utf8)[...]) }
        func type(byte: UInt8) { _ = writeAll(terminal.master.rawValue, [byte][...]) }

        /// Reads what the terminal has, waiting up to `milliseconds` for the first byte.
        private func drain(milliseconds: Int32) {
            var buffer = [UInt8](repeating: 0, count: 4096)
            var entry = pollfd(fd: terminal.master.rawValue, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, milliseconds) > 0 else { return }
            let got = read(terminal.master.rawValue, &buffer, buffer.count)
            if got > 0 { received += buffer[..<got] }
        }

        /// Reads the terminal until its output contains `expected` (15 s at most).
        @discardableResult
        func waitFor(_ expected: String) -> Bool {
            let deadline = ContinuousClock.now + .seconds(15)
            while !output.contains(expected), ContinuousClock.now < deadline { drain(milliseconds: 100) }
            return output.contains(expected)
        }

        /// The exit status, once the client ended (15 s at most); nil if it did not.
        func exitStatus() -> Int32? {
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline {
                drain(milliseconds: 20)
                if case .exited(let status)? = try? process.poll() {
                    drain(milliseconds: 50)
                    return status
                }
            }
            return nil
        }

        deinit { process.kill(SIGKILL) }
    }

    @Test func aTerminalSessionEchoesDetachesAndCanBeTakenOver() throws {
        let stack = try UpStack()
        let config = try stack.write("tty.cfg", #"name = "tty"\#nkernel = "/bin/cat"\#n"#)
        let created = try stack.conch(["create", config])
        try #require(created.status == 0, "create: \(created.stderr)")

        let first = try Client(["tty", "--run-dir", stack.path])
        #expect(first.waitFor("Escape character is ^]"), "no banner: \(first.output)")

        // The guest's console is a terminal, as hvc0 is: what is typed is echoed by
        // its line discipline, CR becomes NL for the program, NL comes back as CR NL.
        first.type("hello\r")
        #expect(first.waitFor("hello\r\nhello\r\n"), "no echo and line: \(first.output.debugDescription)")
        // The escape byte inside a longer chunk (a paste) goes to the guest.
        first.type("x\u{1d}y\r")
        #expect(first.waitFor("x^]y\r\n"), "the pasted escape byte detached: \(first.output.debugDescription)")

        // A second session is refused, with a message that says what to do.
        let refused = try stack.conch(["console", "tty"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("attached in another session"), "\(refused.stderr)")
        #expect(refused.stderr.contains("--force"), "\(refused.stderr)")

        // --force takes it over: the first session ends, saying so, and puts its terminal back.
        let second = try Client(["tty", "--force", "--run-dir", stack.path])
        #expect(second.waitFor("Escape character is ^]"), "no banner: \(second.output)")
        #expect(first.exitStatus() == 1, "the first session did not end")
        #expect(first.output.contains("taken over by another session"), "\(first.output.debugDescription)")
        var settings = termios()
        tcgetattr(first.terminal.slave.rawValue, &settings)
        #expect(settings.c_lflag & tcflag_t(ICANON) != 0, "the first session left its terminal raw")

        second.type("again\r")
        #expect(second.waitFor("again\r\nagain\r\n"), "\(second.output.debugDescription)")
        // Ctrl-] alone detaches, cleanly, on a line of its own.
        second.type(byte: 0x1d)
        #expect(second.exitStatus() == 0, "Ctrl-] did not detach: \(second.output.debugDescription)")
        #expect(second.output.hasSuffix("\r\n"))

        // -e chooses another key; the old one then goes to the guest.
        let third = try Client(["tty", "-e", "^A", "--run-dir", stack.path])
        #expect(third.waitFor("Escape character is ^A"), "\(third.output)")
        third.type(byte: 0x01)
        #expect(third.exitStatus() == 0, "^A did not detach")
        let bad = try stack.conch(["console", "tty", "-e", "^^^"])
        #expect(bad.status != 0 && bad.stderr.contains("-e takes"), "\(bad.stderr)")
    }

    @Test func aSessionFollowsConsoledToItsNewPtyAndSaysWhyItEnds() throws {
        let stack = try UpStack()
        let config = try stack.write("follow.cfg", #"name = "follow"\#nkernel = "/bin/cat"\#n"#)
        try #require(try stack.conch(["create", config]).status == 0)
        let client = try Client(["follow", "--run-dir", stack.path])
        #expect(client.waitFor("Escape character is ^]"))

        // consoled dies; `conch up` restarts it, and it publishes a new pty.
        let pidFile = PidFile(path: "\(stack.path)/consoled.pid")
        let pid = try #require(pidFile.read(), "no consoled pid file")
        kill(pid, SIGKILL)
        #expect(
            stack.eventually { pidFile.read().map { $0 != pid } ?? false },
            "consoled was not restarted"
        )
        // The same session, on the new pty.
        client.type("after\r")
        #expect(client.waitFor("after\r\nafter\r\n"), "\(client.output.debugDescription)")

        // The domain goes: the session ends, non-zero, saying why.
        #expect(try stack.conch(["destroy", "follow"]).status == 0)
        #expect(client.exitStatus() == 1, "the session outlived its domain")
        #expect(client.output.contains("closed: follow is gone"), "\(client.output.debugDescription)")
    }
}

@Suite("guest escape sequences neutralised")
struct ReplaceEscapeTests {
    @Test func conchConsoleReplaceEscapeShowsESCAsADot() throws {
        let stack = try UpStack()
        // A guest that tries to retitle the operator's terminal and colour its text.
        let script = try stack.write(
            "esc.sh",
            "#!/bin/sh\nprintf '\\033]0;pwned\\007plain \\033[31mred\\n'\nexec cat\n"
        )
        chmod(script, 0o755)
        let config = try stack.write("esc.cfg", "name = \"esc\"\nkernel = \"\(script)\"\n")
        try #require(try stack.conch(["create", config]).status == 0)
        let raw = try stack.conch(["console", "esc", "--linger", "0.5"], input: "")
        #expect(
            raw.stdout.contains("\u{1b}]0;pwned"),
            "without the flag the bytes pass: \(raw.stdout.debugDescription)"
        )
        // (console 0's history replays the line to each new session.)
        let safe = try stack.conch(["console", "esc", "--linger", "0.5", "--replace-escape"], input: "")
        #expect(safe.stdout.contains(".]0;pwned\u{07}plain .[31mred"), "\(safe.stdout.debugDescription)")
        #expect(!safe.stdout.contains("\u{1b}"), "an ESC got through: \(safe.stdout.debugDescription)")
    }
}
