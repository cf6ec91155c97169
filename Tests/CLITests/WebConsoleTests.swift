//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras
import SystemPackage
import Testing
import XenTestKit

#if canImport(Glibc)
import Glibc
#endif

/// What the web console's tests need beyond the build: xterm.js from Debian's
/// packages (`conch web` serves it) and Chromium to drive the page.
enum WebPrerequisites {
    static let xterm: Bool = {
        let found =
            FileManager.default.fileExists(atPath: "/usr/share/nodejs/xterm/lib/public/Terminal.js")
            && FileManager.default.fileExists(atPath: "/usr/share/javascript/xterm/xterm.css")
        if !found { print("skipped: install libjs-xterm node-xterm (xterm.js for conch web)") }
        return found
    }()

    static let browser: Bool = {
        let found = HeadlessBrowser.executable() != nil
        if !found { print("skipped: install chromium (the web console's browser test; or set CONCH_CHROMIUM)") }
        return found
    }()
}

@Suite("conch web prerequisites")
struct WebPrerequisitesPresence {
    @Test(.enabled(if: runningInCI, "checked only in CI, where .ci/run installs them"))
    func xtermAndChromiumArePresentInCI() {
        #expect(WebPrerequisites.xterm, "xterm.js is missing in CI: .ci/run must install libjs-xterm and node-xterm")
        #expect(WebPrerequisites.browser, "Chromium is missing in CI: .ci/run must install chromium")
    }
}

/// `conch web` against a running stack, as an operator uses it: from a real
/// browser (headless Chromium), and from a client without the token.
@Suite(
    "conch web: consoles in a browser",
    .enabled(if: WebPrerequisites.xterm, "skipped: install libjs-xterm node-xterm")
)
struct WebConsoleTests {
    /// A guest that prints a known boot log on console 0 and then echoes what is
    /// typed (its console is a terminal: the line discipline echoes, `cat` repeats
    /// the line), with a pty channel that echoes raw bytes.
    static func guestConfig(name: String) -> String {
        """
        name = "\(name)"
        kernel = "/bin/sh"
        extra = "-c 'echo Booting the conch web test guest; echo boot log: all services up; \
        c=$CONCH_GUEST_DEV/xen-channel/org.conch.echo; while [ ! -e $c ]; do sleep 0.1; done; \
        cat <$c >$c & exec cat'"
        channel = [ "name=org.conch.echo, connection=pty" ]

        """
    }

    /// `conch web` on a free loopback port, and the URL it printed first.
    final class WebServer {
        let process: ChildProcess
        let url: String

        init(stack: UpStack) throws {
            (process, url) = try ChildProcess.announcing(
                executable: try ConchExecutable.path(),
                arguments: ["web", "--listen", "127.0.0.1:0", "--run-dir", stack.path],
                logPath: stack.path + "/web.err"
            )
            guard url.hasPrefix("http://127.0.0.1:"), url.contains("/?token=") else {
                throw ConchFailed(description: "conch web printed '\(url)' first")
            }
        }

        /// `http://127.0.0.1:PORT`
        var origin: String { String(url[..<url.range(of: "/?token=")!.lowerBound]) }
        var token: String { String(url[url.range(of: "token=")!.upperBound...]) }
        var port: Int { Int(origin.split(separator: ":").last!)! }

        deinit {
            process.kill(SIGTERM)
            _ = try? process.wait()
        }
    }

    @Test func nothingIsReachableWithoutTheToken() throws {
        let stack = try UpStack()
        let config = try stack.write("tok.cfg", Self.guestConfig(name: "tok"))
        try #require(try stack.conch(["create", config]).status == 0)
        let web = try WebServer(stack: stack)
        let upgrade = [
            "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ]
        let wrong = String(repeating: "0", count: web.token.count)
        for target in ["/", "/api/state", "/assets/xterm.js", "/assets/conch.js", "/ws/console?domain=tok"] {
            for query in ["", target.contains("?") ? "&token=\(wrong)" : "?token=\(wrong)"] {
                let headers = target.hasPrefix("/ws/") ? upgrade : []
                let answer = try LoopbackHTTP.get(port: web.port, target + query, headers: headers)
                // A page or script: 401. A WebSocket upgrade: refused before it is one
                // (Hummingbird answers a refused upgrade with 400).
                let refusal = target.hasPrefix("/ws/") ? "HTTP/1.1 4" : "HTTP/1.1 401"
                #expect(answer.hasPrefix(refusal), "\(target)\(query): \(answer.prefix(200))")
                #expect(!answer.contains("Booting"), "\(target) leaked console output")
            }
        }
        // A bearer token works as well as the query; the answer says what not to load.
        let state = try LoopbackHTTP.get(port: web.port, "/api/state", headers: ["Authorization: Bearer \(web.token)"])
        #expect(state.hasPrefix("HTTP/1.1 200"), "\(state.prefix(300))")
        #expect(state.contains("\"name\":\"tok\""), "\(state)")
        #expect(state.lowercased().contains("content-security-policy: default-src 'none'"))
        // Another site's page, even with the token, cannot open a console.
        let foreign = try LoopbackHTTP.get(
            port: web.port,
            "/ws/console?domain=tok&token=\(web.token)",
            headers: ["Origin: http://evil.example"] + upgrade
        )
        #expect(!foreign.hasPrefix("HTTP/1.1 101"), "\(foreign.prefix(200))")
        let own = try LoopbackHTTP.get(
            port: web.port,
            "/ws/console?domain=tok&token=\(web.token)",
            headers: ["Origin: \(web.origin)"] + upgrade
        )
        #expect(own.hasPrefix("HTTP/1.1 101"), "\(own.prefix(200))")
        // What the page asks for is only looked up: a console number out of range, a
        // name that is a path, an unknown channel each end the session with a reason,
        // and the server goes on serving.
        for query in [
            "domain=tok&console=99999999999999999999", "domain=tok&console=-1", "domain=../../etc/passwd",
            "domain=tok&channel=../../../tmp/x", "domain=tok&console=7", "",
        ] {
            let answer = try LoopbackHTTP.get(
                port: web.port,
                "/ws/console?token=\(web.token)&\(query)",
                headers: ["Origin: \(web.origin)"] + upgrade
            )
            #expect(answer.hasPrefix("HTTP/1.1 101"), "\(query): \(answer.prefix(200))")
            #expect(answer.contains(#""type":"ended""#), "\(query) did not end with a reason: \(answer)")
            #expect(!answer.contains(#""type":"attached""#), "\(query) attached something: \(answer)")
        }
        let still = try LoopbackHTTP.get(port: web.port, "/api/state?token=\(web.token)")
        #expect(still.hasPrefix("HTTP/1.1 200"), "conch web stopped serving: \(still.prefix(200))")
        // The dashboard refreshes every second: each refresh's connections are closed.
        func descriptors() -> Int {
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(web.process.pid)/fd").count) ?? 0
        }
        _ = try LoopbackHTTP.get(port: web.port, "/api/state?token=\(web.token)")
        let before = descriptors()
        for _ in 0..<25 { _ = try LoopbackHTTP.get(port: web.port, "/api/state?token=\(web.token)") }
        #expect(
            descriptors() - before < 5,
            "conch web holds \(descriptors() - before) more descriptors after 25 refreshes"
        )
        // Without --listen it listens on loopback only.
        let help = try ConchExecutable.run(["web", "--help"])
        #expect(help.stdout.contains("127.0.0.1:8080"))
    }

    @Test(.enabled(if: WebPrerequisites.browser, "skipped: install chromium"))
    func aBrowserShowsTheDashboardAndDrivesAConsole() throws {
        let stack = try UpStack()
        let config = try stack.write("web.cfg", Self.guestConfig(name: "web"))
        let created = try stack.conch(["create", config])
        try #require(created.status == 0, "create: \(created.stderr)")
        let domid = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let web = try WebServer(stack: stack)
        let profile = try ScratchDirectory(prefix: "conch-chromium")
        defer { profile.remove() }
        let browser = try HeadlessBrowser(profile: profile.path)
        try browser.navigate(web.url)

        // The dashboard lists the guest's console and channel, with consoled's counters.
        let rows = try browser.waitFor("document.querySelectorAll('#consoles tbody tr').length >= 2 && 1")
        #expect(rows != nil, "the dashboard shows no consoles (\(browser.logPath))")
        let labels = try browser.evaluate(
            "Array.from(document.querySelectorAll('td[data-field=label]')).map(td => td.textContent).join(',')"
        )
        #expect(labels as? String == "console 0,channel org.conch.echo", "\(labels ?? "nil")")
        // The guest is quiet after its boot log: the figures settle, and then match
        // `conch stats --json` counter for counter.
        let fields = ["bytes_out", "bytes_in", "ring_full_events", "throttled_periods", "dropped_bytes"]
        #expect(
            try stack.eventually {
                let stats =
                    try JSONSerialization.jsonObject(
                        with: Data(try stack.conch(["stats", "--json"]).stdout.utf8)
                    ) as? [String: Any]
                let consoles = (stats?["consoles"] as? [[String: Any]]) ?? []
                guard consoles.count == 2 else { return false }
                for console in consoles {
                    let counters = console["counters"] as? [String: Any] ?? [:]
                    for field in fields {
                        let shown = try browser.evaluate(
                            "(document.querySelector('tr[data-domid=\"\(domid)\"][data-devid=\"\(console["devid"]!)\"] "
                                + "td[data-field=\(field)]') || {}).textContent"
                        )
                        guard let shown = shown as? String, shown == "\(counters[field]!)" else { return false }
                    }
                }
                return (counters(of: consoles, devid: 0)["bytes_out"] as? Int ?? 0) > 0
            },
            "the dashboard's counters never matched `conch stats --json`"
        )

        // A session before the browser's reads what the pty held, so that what the
        // browser shows of the boot log can only come from consoled's history.
        let earlier = try stack.conch(["console", "web", "--linger", "0.5"], input: "")
        #expect(earlier.stdout.contains("boot log: all services up"), "\(earlier.stdout) \(earlier.stderr)")

        // Open console 0: the boot log is replayed into the terminal first, once.
        try browser.evaluate("document.querySelector('tr[data-devid=\"0\"] button.open').click()")
        // (xterm's DOM renderer shows a space as an empty cell: the text has none.)
        let booted = try browser.waitFor(
            "(document.querySelector('.xterm-rows') || {}).innerText?.includes('bootlog:allservicesup')"
        )
        let replayed = try terminalText(browser)
        #expect(booted != nil, "the terminal never showed the boot log: \(replayed)")
        #expect(replayed.contains("Bootingtheconchwebtestguest"), "\(replayed)")
        #expect(replayed.components(separatedBy: "bootlog:allservicesup").count == 2, "twice: \(replayed)")

        // Typing goes to the guest; its terminal echoes the line, and cat repeats it.
        try browser.type("hello from the browser\r")
        let echoed = try browser.waitFor(
            "(document.querySelector('.xterm-rows').innerText.match(/hellofromthebrowser/g) || []).length >= 2"
        )
        let typed = try terminalText(browser)
        #expect(echoed != nil, "no echo: \(typed)")

        // One session per console: the browser holds console 0, and the dashboard says so.
        let refused = try stack.conch(["console", "web"], input: "")
        #expect(refused.status != 0 && refused.stderr.contains("attached in another session"), "\(refused.stderr)")
        let attached = try browser.waitFor(
            "document.querySelector('tr[data-devid=\"0\"] td[data-field=session]').textContent.includes('attached')"
        )
        #expect(attached != nil, "the dashboard does not show the session")
        let stats = try JSONSerialization.jsonObject(with: Data(try stack.conch(["stats", "--json"]).stdout.utf8))
        let zero = ((stats as? [String: Any])?["consoles"] as? [[String: Any]])?.first { $0["devid"] as? Int == 0 }
        #expect(zero?["session_pid"] as? Int == Int(web.process.pid), "conch stats: \(zero ?? [:])")

        // The screenshot shows the page, not a blank: decoded, it has the terminal's
        // black and many colours (text, table, buttons).
        let png = try browser.screenshot()
        let artifacts = ProcessInfo.processInfo.environment["CONCH_TEST_ARTIFACTS"] ?? "/tmp/conch-test-artifacts"
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        let shot = artifacts + "/web-console.png"
        try png.write(to: URL(fileURLWithPath: shot))
        print("conch web screenshot: \(shot) (\(png.count) bytes)")
        let pixels =
            try browser.evaluate(
                """
                (async () => {
                  const image = new Image();
                  image.src = "data:image/png;base64,\(png.base64EncodedString())";
                  await image.decode();
                  const canvas = document.createElement("canvas");
                  canvas.width = image.width; canvas.height = image.height;
                  const context = canvas.getContext("2d");
                  context.drawImage(image, 0, 0);
                  const data = context.getImageData(0, 0, image.width, image.height).data;
                  const colours = new Set();
                  let dark = 0;
                  for (let i = 0; i < data.length; i += 4) {
                    colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
                    if (data[i] + data[i + 1] + data[i + 2] < 60) { dark += 1; }
                  }
                  return { width: image.width, colours: colours.size, dark: dark / (data.length / 4) };
                })()
                """
            ) as? [String: Any]
        let colours = pixels?["colours"] as? Int ?? 0
        let dark = pixels?["dark"] as? Double ?? 0
        #expect(pixels?["width"] as? Int == 1280, "\(pixels ?? [:])")
        #expect(colours >= 16 && dark > 0.05 && dark < 0.9, "the screenshot looks blank: \(pixels ?? [:])")

        // The echo round trip of one keystroke, through the web console and through
        // `conch console`, on the channel whose guest end echoes raw bytes (medians
        // of 100; printed, not asserted: speed is for benchmarks).
        let webEcho = try browser.evaluate(Self.echoProbe(domid: domid)) as? [String: Any]
        let consoleEcho = try Self.consoleEcho(stack: stack, domain: "web")
        print("keystroke echo, median of 100: web console \(webEcho ?? [:]) ms; conch console \(consoleEcho) ms")
        #expect((webEcho?["count"] as? Int) == 100, "\(webEcho ?? [:])")

        // `conch console --force` takes console 0 over from the browser, which says so.
        var keyboard: [Int32] = [-1, -1]
        try #require(pipe(&keyboard) == 0)
        defer { close(keyboard[1]) }
        let errors = stack.path + "/console.err"
        let log = open(errors, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let holder = try ChildProcess(
            executable: try ConchExecutable.path(),
            arguments: ["console", "web", "--force", "--run-dir", stack.path],
            descriptors: [0: FileDescriptor(rawValue: keyboard[0]), 2: FileDescriptor(rawValue: log)]
        )
        close(keyboard[0])
        close(log)
        defer { holder.kill(SIGKILL) }
        let status = try browser.waitFor(
            "document.getElementById('terminal-status').textContent.includes('taken over') "
                + "&& document.getElementById('terminal-status').textContent"
        )
        #expect(status != nil, "the page did not say the console was taken over")

        // Opening it again is refused while `conch console` holds it; the page offers
        // to take it over, and doing so ends the other session, which says why.
        try browser.evaluate("document.querySelector('tr[data-devid=\"0\"] button.open').click()")
        let busy = try browser.waitFor(
            "!document.getElementById('takeover').hidden && document.getElementById('terminal-status').textContent"
        )
        #expect((busy as? String)?.contains("attached in another session") == true, "\(busy ?? "nil")")
        try browser.evaluate("document.getElementById('takeover').click()")
        let retaken = try browser.waitFor("document.getElementById('terminal-status').textContent === 'attached'")
        #expect(retaken != nil, "the page could not take the console back")
        #expect(stack.eventually { (try? holder.poll()) != nil }, "conch console did not end when taken over")
        let said = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        #expect(said.contains("taken over by another session"), "\(said)")

        // Everything the page loaded came from conch web itself.
        let foreign = browser.requestedURLs.filter { !$0.hasPrefix(web.origin + "/") && !$0.hasPrefix("data:") }
        #expect(foreign.isEmpty, "requests to other origins: \(foreign)")
        #expect(browser.requestedURLs.contains { $0.hasPrefix(web.origin + "/assets/xterm.js") })
    }

    private func counters(of consoles: [[String: Any]], devid: Int) -> [String: Any] {
        consoles.first { $0["devid"] as? Int == devid }?["counters"] as? [String: Any] ?? [:]
    }

    private func terminalText(_ browser: HeadlessBrowser) throws -> String {
        (try browser.evaluate("(document.querySelector('.xterm-rows') || {}).innerText || ''") as? String) ?? ""
    }

    /// In the page: 100 one-byte round trips over the console WebSocket, as the
    /// terminal makes them; median and 90th percentile in milliseconds.
    static func echoProbe(domid: String) -> String {
        """
        (async () => {
          const token = new URLSearchParams(location.search).get("token");
          const socket = new WebSocket("ws://" + location.host + "/ws/console?token=" + token +
            "&domain=\(domid)&channel=org.conch.echo");
          socket.binaryType = "arraybuffer";
          let wake = null;
          const attached = new Promise(resolve => {
            socket.onmessage = event => {
              if (typeof event.data === "string") {
                if (JSON.parse(event.data).type === "attached") { resolve(); }
              } else if (wake) { const w = wake; wake = null; w(); }
            };
          });
          await attached;
          const times = [];
          for (let i = 0; i < 100; i += 1) {
            const echoed = new Promise(resolve => { wake = resolve; });
            const start = performance.now();
            socket.send(new Uint8Array([97 + i % 26]));
            await echoed;
            times.push(performance.now() - start);
          }
          socket.close();
          times.sort((a, b) => a - b);
          return { count: times.length, median: times[50], p90: times[90] };
        })()
        """
    }

    /// 100 one-byte round trips through `conch console` (its stdin and stdout are
    /// pipes) on the echo channel; the median in milliseconds.
    static func consoleEcho(stack: UpStack, domain: String) throws -> Double {
        var input: [Int32] = [-1, -1]
        var output: [Int32] = [-1, -1]
        guard pipe(&input) == 0, pipe(&output) == 0 else { throw ConchFailed(description: "pipe failed") }
        let client = try ChildProcess(
            executable: try ConchExecutable.path(),
            arguments: ["console", domain, "--channel", "org.conch.echo", "--run-dir", stack.path],
            descriptors: [0: FileDescriptor(rawValue: input[0]), 1: FileDescriptor(rawValue: output[1])]
        )
        close(input[0])
        close(output[1])
        defer {
            close(input[1])
            close(output[0])
            client.kill(SIGKILL)
            _ = try? client.wait()
        }
        var times: [Double] = []
        var byte: UInt8 = 0
        for index in 0..<101 {
            var key = UInt8(ascii: "a") + UInt8(index % 26)
            let start = ContinuousClock.now
            _ = write(input[1], &key, 1)
            var entry = pollfd(fd: output[0], events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 5000) > 0, read(output[0], &byte, 1) == 1 else {
                throw ConchFailed(description: "conch console did not echo")
            }
            let took = ContinuousClock.now - start
            // The first includes finding and opening the console.
            if index > 0 {
                times.append(Double(took.components.attoseconds) / 1e15 + Double(took.components.seconds) * 1000)
            }
        }
        return times.sorted()[50]
    }
}
