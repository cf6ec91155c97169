//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import SystemExtras
import ToolstackRuntime

/// `conch web`: the dashboard and the consoles of one host in a browser.
///
/// A client of the host's daemons like `conch console`, not a second backend: it
/// reads consoled's statistics socket for the dashboard, and a console's pty (or a
/// channel's socket) only while a browser has that console open, so consoles that
/// nobody watches cost nothing. Every request needs the ``AccessToken``.
public struct WebConsoleServer: Sendable {
    /// The largest WebSocket frame either way; console bytes are sent in frames of at most this.
    static let maxFrameSize = 1 << 14

    public var host: String
    public var port: Int
    public var token: AccessToken
    public var xterm: XtermBundle
    /// Opens a connection to the host's daemons, once per request that needs one (so
    /// a daemon restarted meanwhile is found again).
    public var openHost: @Sendable () async throws -> HostConnection
    public var logger: Logger

    public init(
        host: String,
        port: Int,
        token: AccessToken,
        xterm: XtermBundle,
        logger: Logger,
        openHost: @escaping @Sendable () async throws -> HostConnection
    ) {
        self.host = host
        self.port = port
        self.token = token
        self.xterm = xterm
        self.logger = logger
        self.openHost = openHost
    }

    /// The URL to open, token included, for a server listening on `address`.
    public func url(listeningOn address: SocketAddress?) -> String {
        var shown = host
        if shown == "0.0.0.0" || shown == "::" { shown = ProcessInfo.processInfo.hostName }
        if shown.contains(":") { shown = "[\(shown)]" }
        return "http://\(shown):\(address?.port ?? port)/?token=\(token.value)"
    }

    /// Serves until SIGTERM or SIGINT; `listening` gets the URL once the socket is bound.
    public func run(listening: @escaping @Sendable (String) -> Void) async throws {
        let router = Router(context: BasicWebSocketRequestContext.self)
        router.middlewares.add(SecurityHeaders())
        router.middlewares.add(TokenCheck(token: token))
        let page = WebPage.html(token: token)
        router.get("/") { _, _ in Self.asset(page, type: "text/html; charset=utf-8") }
        router.get("/assets/conch.js") { _, _ in Self.asset(WebPage.script, type: "text/javascript; charset=utf-8") }
        router.get("/assets/conch.css") { _, _ in Self.asset(WebPage.stylesheet, type: "text/css; charset=utf-8") }
        let xterm = self.xterm
        router.get("/assets/xterm.js") { _, _ in Self.asset(xterm.script, type: "text/javascript; charset=utf-8") }
        router.get("/assets/xterm.css") { _, _ in Self.asset(xterm.stylesheet, type: "text/css; charset=utf-8") }
        let openHost = self.openHost
        router.get("/api/state") { _, _ in
            let state: DashboardState
            do {
                let host = try await openHost()
                // A connection to xenstored per refresh: closed, or every tab leaks one a second.
                defer { host.store.close() }
                state = await DashboardState.read(host: host)
            } catch {
                state = DashboardState(domains: [], problem: "\(error)")
            }
            return Self.asset(try JSONOutput.string(state), type: "application/json")
        }

        let sockets = Router(context: BasicWebSocketRequestContext.self)
        sockets.middlewares.add(TokenCheck(token: token))
        sockets.ws("/ws/console") { request, _ in
            // Another site's page cannot open a console even with the token in hand:
            // browsers always say where a WebSocket comes from.
            guard Self.sameOrigin(request) else { return .dontUpgrade }
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            let query = Dictionary(
                context.request.uri.queryParameters.map { (String($0.key), String($0.value)) },
                uniquingKeysWith: { first, _ in first }
            )
            do {
                let request = try ConsoleBridge.Request(query: query)
                await ConsoleBridge.serve(request, host: openHost, inbound: inbound, outbound: outbound)
            } catch {
                try? await ConsoleBridge.send(.init(type: "ended", reason: "\(error)"), to: outbound)
                try? await outbound.close(.normalClosure, reason: nil)
            }
        }

        let app = Application(
            router: router,
            server: .http1WebSocketUpgrade(
                webSocketRouter: sockets,
                configuration: .init(ws: .init(maxFrameSize: Self.maxFrameSize))
            ),
            configuration: .init(address: .hostname(host, port: port), serverName: "conch-web"),
            onServerRunning: { [self] channel in listening(url(listeningOn: channel.localAddress)) },
            logger: logger
        )
        try await app.runService()
    }

    static func asset(_ text: String, type: String) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: type],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text))
        )
    }

    /// Whether a WebSocket upgrade comes from this server's own page: no `Origin`
    /// (not a browser), or one naming the host the request was sent to.
    static func sameOrigin(_ request: Request) -> Bool {
        guard let origin = request.headers[.origin] else { return true }
        guard let authority = request.head.authority else { return false }
        return origin == "http://\(authority)" || origin == "https://\(authority)"
    }
}

/// What every response says to the browser: load nothing from anywhere else,
/// send no referrer (the URL holds the token), keep nothing in caches, and do not
/// let other sites frame the page.
struct SecurityHeaders<Context: RequestContext>: RouterMiddleware {
    static var policy: String {
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
            + "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    }

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws
        -> Response
    {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError {
            // As plain text: the person reading it is at a browser or curl.
            response = WebConsoleServer.asset(error.body ?? "\(error.status)\n", type: "text/plain; charset=utf-8")
            response.status = error.status
        }
        response.headers[.contentSecurityPolicy] = Self.policy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        response.headers[.cacheControl] = "no-store"
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        return response
    }
}
