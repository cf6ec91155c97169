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

#if canImport(Glibc)
import Glibc
#endif

/// A real headless Chromium driven over the DevTools protocol, for tests of pages
/// a user opens. The protocol runs over a pair of pipes (`--remote-debugging-pipe`:
/// the browser reads commands on its fd 3 and answers on its fd 4, each message a
/// JSON object ended by a NUL byte), so no port is opened and no client library is
/// needed. One page; every event the page raises is kept in ``events``.
public final class HeadlessBrowser {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private let process: ChildProcess
    private let commands: Int32
    private let answers: Int32
    private var pending: [UInt8] = []
    private var nextID = 1
    private var session: String?
    /// The browser's own output (it is chatty), for failure messages.
    public let logPath: String
    /// Every event received so far: `["method": …, "params": …]`.
    public private(set) var events: [[String: Any]] = []

    /// Where Chromium is, or nil: Debian's `chromium`, or `CONCH_CHROMIUM`.
    public static func executable() -> String? {
        if let named = ProcessInfo.processInfo.environment["CONCH_CHROMIUM"] { return named }
        return ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    /// Starts the browser with a fresh profile in `profile` and attaches to a blank page.
    public init(profile: String, width: Int = 1280, height: Int = 900) throws {
        guard let chromium = Self.executable() else {
            throw Failure(
                description: "Chromium is not installed: `apt-get install chromium` (Debian) or set CONCH_CHROMIUM"
            )
        }
        var toBrowser: [Int32] = [-1, -1]
        var fromBrowser: [Int32] = [-1, -1]
        guard pipe(&toBrowser) == 0, pipe(&fromBrowser) == 0 else {
            throw Failure(description: "pipe: \(String(cString: strerror(errno)))")
        }
        // Ours stay ours: ChildProcess dup2s the browser's ends into place itself.
        for end in toBrowser + fromBrowser { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        logPath = profile + "/chromium.log"
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer {
            close(toBrowser[0])
            close(fromBrowser[1])
            if log >= 0 { close(log) }
        }
        var arguments = [
            "--headless=new", "--disable-gpu", "--remote-debugging-pipe", "--user-data-dir=\(profile)",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--window-size=\(width),\(height)",
        ]
        // Chromium's sandbox refuses to start as root (CI runs as root).
        if geteuid() == 0 { arguments.append("--no-sandbox") }
        arguments.append("about:blank")
        var descriptors: [Int32: FileDescriptor] = [
            3: FileDescriptor(rawValue: toBrowser[0]), 4: FileDescriptor(rawValue: fromBrowser[1]),
        ]
        if log >= 0 {
            descriptors[1] = FileDescriptor(rawValue: log)
            descriptors[2] = FileDescriptor(rawValue: log)
        }
        process = try ChildProcess(
            executable: chromium,
            arguments: arguments,
            descriptors: descriptors,
            newProcessGroup: true
        )
        commands = toBrowser[1]
        answers = fromBrowser[0]
        let targets = try call("Target.getTargets", page: false)
        let infos = (targets["targetInfos"] as? [[String: Any]]) ?? []
        let pageID: String
        if let existing = infos.first(where: { $0["type"] as? String == "page" })?["targetId"] as? String {
            pageID = existing
        } else {
            pageID = try call("Target.createTarget", ["url": "about:blank"], page: false)["targetId"] as? String ?? ""
        }
        let attached = try call("Target.attachToTarget", ["targetId": pageID, "flatten": true], page: false)
        session = attached["sessionId"] as? String
        for domain in ["Page", "Runtime", "Network"] { _ = try call("\(domain).enable") }
    }

    deinit {
        process.kill(SIGKILL)
        _ = try? process.wait()
        close(commands)
        close(answers)
    }

    /// Sends one command (to the page unless `page` is false) and returns its result;
    /// throws the browser's error, or after `timeout`.
    @discardableResult
    public func call(
        _ method: String,
        _ parameters: [String: Any] = [:],
        page: Bool = true,
        timeout: Duration = .seconds(30)
    ) throws -> [String: Any] {
        let id = nextID
        nextID += 1
        var message: [String: Any] = ["id": id, "method": method, "params": parameters]
        if page, let session { message["sessionId"] = session }
        var bytes = [UInt8](try JSONSerialization.data(withJSONObject: message))
        bytes.append(0)
        guard writeAll(commands, bytes[...]) else { throw Failure(description: "the browser went away (\(method))") }
        let deadline = ContinuousClock.now + timeout
        while true {
            while let end = pending.firstIndex(of: 0) {
                let text = Data(pending[..<end])
                pending.removeSubrange(...end)
                guard let object = try JSONSerialization.jsonObject(with: text) as? [String: Any] else { continue }
                if object["id"] as? Int == id {
                    if let error = object["error"] as? [String: Any] {
                        throw Failure(description: "\(method): \(error["message"] ?? error)")
                    }
                    return object["result"] as? [String: Any] ?? [:]
                }
                if object["method"] != nil { events.append(object) }
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw Failure(description: "\(method): no answer within \(timeout)") }
            var entry = pollfd(fd: answers, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(
                left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
            )
            guard poll(&entry, 1, max(1, milliseconds)) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let got = read(answers, &buffer, buffer.count)
            guard got > 0 else { throw Failure(description: "the browser exited (see \(logPath))") }
            pending += buffer[..<got]
        }
    }

    public func navigate(_ url: String) throws {
        let result = try call("Page.navigate", ["url": url])
        if let error = result["errorText"] as? String { throw Failure(description: "navigate: \(error)") }
    }

    /// Evaluates a JavaScript expression in the page; its value, as JSON gives it
    /// (promises awaited).
    public func evaluate(_ expression: String) throws -> Any? {
        let result = try call(
            "Runtime.evaluate",
            ["expression": expression, "returnByValue": true, "awaitPromise": true]
        )
        if let exception = result["exceptionDetails"] as? [String: Any] {
            let detail = (exception["exception"] as? [String: Any])?["description"] ?? exception["text"] ?? ""
            throw Failure(description: "\(expression): \(detail)")
        }
        return (result["result"] as? [String: Any])?["value"]
    }

    /// Evaluates `expression` until it gives something other than false, null, 0 or
    /// "" (up to `seconds`); that value, or nil.
    public func waitFor(_ expression: String, seconds: Double = 15) throws -> Any? {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while true {
            let value = try evaluate(expression)
            switch value {
            case nil, is NSNull: break
            case let flag as Bool where !flag: break
            case let text as String where text.isEmpty: break
            case let number as NSNumber where number == 0: break
            default: return value
            }
            guard ContinuousClock.now < deadline else { return nil }
            usleep(50_000)
        }
    }

    /// Types `text` into the focused element, a key at a time as a keyboard would
    /// (`\r` is Enter).
    public func type(_ text: String) throws {
        for character in text {
            if character == "\r" || character == "\n" {
                let enter: [String: Any] = [
                    "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r",
                ]
                try call("Input.dispatchKeyEvent", enter.merging(["type": "keyDown"]) { $1 })
                try call("Input.dispatchKeyEvent", enter.merging(["type": "keyUp"]) { $1 })
            } else {
                let key = String(character)
                try call("Input.dispatchKeyEvent", ["type": "keyDown", "key": key, "text": key])
                try call("Input.dispatchKeyEvent", ["type": "keyUp", "key": key])
            }
        }
    }

    /// A PNG of what the page shows.
    public func screenshot() throws -> Data {
        let result = try call("Page.captureScreenshot", ["format": "png"])
        guard let base64 = result["data"] as? String, let data = Data(base64Encoded: base64) else {
            throw Failure(description: "the screenshot came back empty")
        }
        return data
    }

    /// Every URL the page asked for so far.
    public var requestedURLs: [String] {
        events.compactMap { event in
            guard event["method"] as? String == "Network.requestWillBeSent" else { return nil }
            return ((event["params"] as? [String: Any])?["request"] as? [String: Any])?["url"] as? String
        }
    }
}
