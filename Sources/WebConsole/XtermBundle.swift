//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation

/// xterm.js for the browser, made at start-up from Debian's packages, never kept
/// in git. `libjs-xterm` 3.8.1 ships `xterm.css` and a `xterm.js` that is only a
/// stub `require`-ing modules it does not ship; the modules themselves are in
/// `node-xterm` (CommonJS, one file per module). The bundle wraps each module in a
/// function and adds a small `require` that resolves relative names, so the page
/// loads one script with no build step and no second origin.
public struct XtermBundle: Sendable {
    /// The script: defines `Terminal` on `window`.
    public let script: String
    /// xterm's stylesheet.
    public let stylesheet: String

    /// Where Debian puts them.
    public static let defaultModules = "/usr/share/nodejs/xterm/lib"
    public static let defaultStylesheet = "/usr/share/javascript/xterm/xterm.css"

    /// Reads every module under `modules` (tests excluded) and the stylesheet;
    /// throws naming the package to install when either is missing.
    public init(modules: String = Self.defaultModules, stylesheet: String = Self.defaultStylesheet) throws {
        let missing = "xterm.js is not installed (install Debian's libjs-xterm and node-xterm, or pass --xterm-modules)"
        guard let css = try? String(contentsOfFile: stylesheet, encoding: .utf8) else {
            throw WebConsoleError("\(missing): no \(stylesheet)")
        }
        let root = URL(fileURLWithPath: modules).standardizedFileURL
        guard let walker = FileManager.default.enumerator(atPath: root.path) else {
            throw WebConsoleError("\(missing): no \(modules)")
        }
        var entries: [String] = []
        var names: Set<String> = []
        for case let relative as String in walker
        where relative.hasSuffix(".js") && !relative.hasSuffix(".test.js") {
            let source = try String(contentsOfFile: root.path + "/" + relative, encoding: .utf8)
            // The source maps are not served; without the comment the browser does not ask.
            let body = source.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix("//# sourceMappingURL=") }
                .joined(separator: "\n")
            let name = String(relative.dropLast(".js".count))
            names.insert(name)
            entries.append("\(Self.jsonString(name)): function (require, module, exports) {\n\(body)\n}")
        }
        guard names.contains("public/Terminal") else {
            throw WebConsoleError("\(missing): no public/Terminal.js in \(modules)")
        }
        script = """
            // xterm.js \(Self.version(of: modules) ?? "") from \(modules), bundled by conch web.
            (function () {
              "use strict";
              var modules = {
            \(entries.sorted().joined(separator: ",\n"))
              };
              var loaded = {};
              function resolve(from, request) {
                var parts = from.split("/").slice(0, -1);
                request.split("/").forEach(function (part) {
                  if (part === "..") { parts.pop(); } else if (part !== ".") { parts.push(part); }
                });
                return parts.join("/").replace(/\\.js$/, "");
              }
              function load(name) {
                if (loaded[name]) { return loaded[name].exports; }
                if (!modules[name]) { throw new Error("xterm bundle: no module " + name); }
                var module = { exports: {} };
                loaded[name] = module;
                modules[name](function (request) { return load(resolve(name, request)); }, module, module.exports);
                return module.exports;
              }
              window.Terminal = load("public/Terminal").Terminal;
            })();

            """
        self.stylesheet = css
    }

    private static func version(of modules: String) -> String? {
        let manifest = URL(fileURLWithPath: modules).deletingLastPathComponent().appendingPathComponent("package.json")
        guard let data = try? Data(contentsOf: manifest),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return object["version"] as? String
    }

    static func jsonString(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(text)) ?? Data("\"\"".utf8), as: UTF8.self)
    }
}

/// A failure of `conch web`, with a message for the operator.
public struct WebConsoleError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
