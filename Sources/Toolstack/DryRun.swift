//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// What `conch create --dry-run` prints (as JSON): the parsed and validated
/// configuration with its warnings, or the first error. Modelled on `xl -N`,
/// which prints the parsed configuration without creating anything.
public struct DryRunReport: Equatable, Sendable, Codable {
    /// The configuration; nil when there is an error.
    public var configuration: DomainConfiguration?
    /// Warnings as printed text (`file:line: warning: …`), in order.
    public var warnings: [String]
    /// The error as printed text; nil when the configuration is usable.
    public var error: String?

    public init(configuration: DomainConfiguration?, warnings: [String], error: String?) {
        self.configuration = configuration
        self.warnings = warnings
        self.error = error
    }

    /// Parses and validates `text` (``DomainConfiguration/validate()``; the
    /// kernel check needs the file system and is left to the caller).
    public static func make(text: String, fileName: String) -> DryRunReport {
        let parsed: DomainConfiguration.Parsed
        do {
            parsed = try DomainConfiguration.parse(text, fileName: fileName)
        } catch {
            return DryRunReport(
                configuration: nil,
                warnings: error.warnings.map(\.description),
                error: error.description
            )
        }
        let warnings = parsed.warnings.map(\.description)
        do {
            try parsed.configuration.validate()
        } catch {
            return DryRunReport(configuration: nil, warnings: warnings, error: "\(fileName): \(error.message)")
        }
        return DryRunReport(configuration: parsed.configuration, warnings: warnings, error: nil)
    }
}
