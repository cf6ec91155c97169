//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import HTTPTypes
import Hummingbird

/// The secret every request to `conch web` carries: 32 random bytes, in hex.
/// Whoever has it can type into every guest's console, so it is printed once, in
/// the URL on `conch web`'s standard output, and compared in constant time.
public struct AccessToken: Sendable, Equatable {
    public let value: String

    public init(value: String) { self.value = value }

    /// A fresh token from the system's cryptographic generator (getrandom(2)).
    public static func random() -> AccessToken {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in bytes { text += [hex[Int(byte >> 4)], hex[Int(byte & 15)]] }
        return AccessToken(value: String(decoding: text, as: UTF8.self))
    }

    /// Whether `candidate` is this token; the time taken does not depend on where
    /// they differ, only on the length.
    public func accepts(_ candidate: some StringProtocol) -> Bool {
        let expected = Array(value.utf8)
        let given = Array(candidate.utf8)
        guard expected.count == given.count else { return false }
        var difference: UInt8 = 0
        for index in expected.indices { difference |= expected[index] ^ given[index] }
        return difference == 0
    }
}

/// Refuses every request without the token, before routing: pages, scripts, the
/// state API and WebSocket upgrades alike. The token comes as `?token=` (the URL
/// `conch web` prints, and what the page puts on every request it makes) or as
/// `Authorization: Bearer`.
struct TokenCheck<Context: RequestContext>: RouterMiddleware {
    let token: AccessToken

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws
        -> Response
    {
        let bearer = request.headers[.authorization].flatMap { value in
            value.hasPrefix("Bearer ") ? value.dropFirst("Bearer ".count) : nil
        }
        guard let given = request.uri.queryParameters["token"] ?? bearer, token.accepts(given) else {
            throw HTTPError(
                .unauthorized,
                message: "conch web: this needs the token: open the URL `conch web` printed when it started\n"
            )
        }
        return try await next(request, context)
    }
}
