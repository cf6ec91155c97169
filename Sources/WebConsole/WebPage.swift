//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// The one page `conch web` serves: the dashboard of every guest's consoles and
/// channels, refreshed every second from `/api/state`, and a terminal (xterm.js)
/// attached over a WebSocket to the console clicked. Everything it loads comes
/// from `conch web` itself (the Content-Security-Policy says so to the browser),
/// and every request carries the token from the page's own URL.
enum WebPage {
    /// The HTML, with the token in the URLs of the page's own assets (the page is
    /// only served to a request that already had it).
    static func html(token: AccessToken) -> String {
        let query = "token=" + token.value
        return """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>Conch consoles</title>
            <link rel="icon" href="data:,">
            <link rel="stylesheet" href="/assets/xterm.css?\(query)">
            <link rel="stylesheet" href="/assets/conch.css?\(query)">
            </head>
            <body>
            <header><h1>Conch</h1><span id="status">loading…</span></header>
            <table id="consoles">
            <thead><tr>
            <th>Domain</th><th>Console</th><th>Kind</th><th>State</th><th>Out (bytes)</th><th>In (bytes)</th>
            <th>Ring full</th><th>Throttled</th><th>Dropped</th><th>Quarantine</th><th>Session</th><th></th>
            </tr></thead>
            <tbody></tbody>
            </table>
            <section id="terminal-panel" hidden>
            <div class="bar">
            <strong id="terminal-title"></strong>
            <span id="terminal-status"></span>
            <button id="takeover" hidden>Take over</button>
            <button id="close">Close</button>
            </div>
            <div id="terminal"></div>
            </section>
            <script src="/assets/xterm.js?\(query)"></script>
            <script src="/assets/conch.js?\(query)"></script>
            </body>
            </html>

            """
    }

    static let stylesheet = """
        body { font-family: sans-serif; margin: 1em 2em; background: #fafafa; color: #222; }
        header { display: flex; align-items: baseline; gap: 1em; }
        h1 { font-size: 1.4em; margin: 0 0 .5em 0; }
        #status { color: #666; }
        table { border-collapse: collapse; margin-bottom: 1em; }
        th, td { padding: .25em .6em; border-bottom: 1px solid #ddd; text-align: left; }
        td.number { text-align: right; font-variant-numeric: tabular-nums; }
        tr.quarantined td { background: #fde2e2; }
        .bar { display: flex; gap: 1em; align-items: center; padding: .4em 0; }
        #terminal-status { color: #555; }
        #terminal { background: #000; padding: 4px; display: inline-block; }

        """

    static let script = #"""
        "use strict";
        (function () {
          var token = new URLSearchParams(window.location.search).get("token") || "";
          var tokenQuery = "token=" + encodeURIComponent(token);
          var rows = document.querySelector("#consoles tbody");
          var statusLine = document.getElementById("status");
          var panel = document.getElementById("terminal-panel");
          var title = document.getElementById("terminal-title");
          var terminalStatus = document.getElementById("terminal-status");
          var takeover = document.getElementById("takeover");
          var term = null;
          var socket = null;
          var target = null;

          function cell(row, text, field, number) {
            var td = document.createElement("td");
            td.textContent = text;
            if (field) { td.dataset.field = field; }
            if (number) { td.className = "number"; }
            row.appendChild(td);
            return td;
          }

          function render(state) {
            var body = document.createDocumentFragment();
            var count = 0;
            state.domains.forEach(function (domain) {
              domain.consoles.forEach(function (console) {
                var c = console.counters;
                var row = document.createElement("tr");
                row.dataset.domid = domain.domid;
                row.dataset.devid = console.devid;
                if (c.quarantine_reason) { row.className = "quarantined"; }
                cell(row, domain.name + " (" + domain.domid + ")", "domain");
                cell(row, console.label, "label");
                cell(row, console.connection, "connection");
                cell(row, c.sink_state, "sink_state");
                cell(row, String(c.bytes_out), "bytes_out", true);
                cell(row, String(c.bytes_in), "bytes_in", true);
                cell(row, String(c.ring_full_events), "ring_full_events", true);
                cell(row, String(c.throttled_periods), "throttled_periods", true);
                cell(row, String(c.dropped_bytes), "dropped_bytes", true);
                cell(row, c.quarantine_reason || "", "quarantine_reason");
                cell(row, console.session_pid ? "attached (pid " + console.session_pid + ")"
                  : (console.client_connected ? "client connected" : ""), "session");
                var action = document.createElement("td");
                var button = document.createElement("button");
                button.textContent = "Open";
                button.className = "open";
                button.addEventListener("click", function () {
                  openConsole({ domain: String(domain.domid), name: domain.name, console: console }, false);
                });
                action.appendChild(button);
                row.appendChild(action);
                body.appendChild(row);
                count += 1;
              });
            });
            rows.replaceChildren(body);
            var guests = state.domains.length === 1 ? "1 guest" : state.domains.length + " guests";
            var consoles = count === 1 ? "1 console or channel" : count + " consoles and channels";
            statusLine.textContent = state.problem || (guests + ", " + consoles);
          }

          function refresh() {
            fetch("/api/state?" + tokenQuery, { cache: "no-store" })
              .then(function (response) {
                if (!response.ok) { throw new Error("HTTP " + response.status); }
                return response.json();
              })
              .then(render)
              .catch(function (error) { statusLine.textContent = "cannot reach conch web: " + error.message; });
          }

          function closeSession() {
            if (socket) { socket.onclose = null; socket.close(); socket = null; }
          }

          function openConsole(chosen, force) {
            closeSession();
            target = chosen;
            panel.hidden = false;
            takeover.hidden = true;
            title.textContent = chosen.console.label + " of " + chosen.name;
            terminalStatus.textContent = "connecting…";
            if (!term) {
              term = new window.Terminal({ rendererType: "dom", cols: 100, rows: 30, scrollback: 5000 });
              term.open(document.getElementById("terminal"));
              term.on("data", function (data) {
                if (socket && socket.readyState === WebSocket.OPEN) { socket.send(new TextEncoder().encode(data)); }
              });
            }
            term.reset();
            var which = chosen.console.name
              ? "channel=" + encodeURIComponent(chosen.console.name)
              : "console=" + chosen.console.devid;
            var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
            var url = scheme + window.location.host + "/ws/console?" + tokenQuery +
              "&domain=" + encodeURIComponent(chosen.domain) + "&" + which + (force ? "&force=1" : "");
            var decoder = new TextDecoder("utf-8");
            var current = new WebSocket(url);
            current.binaryType = "arraybuffer";
            current.onmessage = function (event) {
              if (typeof event.data !== "string") {
                term.write(decoder.decode(new Uint8Array(event.data), { stream: true }));
                return;
              }
              var status = JSON.parse(event.data);
              if (status.type === "attached") {
                terminalStatus.textContent = "attached";
                term.focus();
              } else if (status.type === "ended") {
                terminalStatus.textContent = status.reason;
                takeover.hidden = !status.busy;
              }
            };
            current.onclose = function () {
              if (terminalStatus.textContent === "attached" || terminalStatus.textContent === "connecting…") {
                terminalStatus.textContent = "disconnected";
              }
            };
            socket = current;
          }

          takeover.addEventListener("click", function () { if (target) { openConsole(target, true); } });
          document.getElementById("close").addEventListener("click", function () {
            closeSession();
            panel.hidden = true;
          });
          refresh();
          window.setInterval(refresh, 1000);
        })();

        """#
}
