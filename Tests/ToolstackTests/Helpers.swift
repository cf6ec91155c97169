//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Toolstack

/// The error `XLConfig.parse` reports for `text`, or nil if it parses.
func lexError(_ text: String, file: String = "guest.cfg") -> ConfigError? {
    do {
        _ = try XLConfig.parse(text, fileName: file)
        return nil
    } catch {
        return error
    }
}

/// The error `DomainConfiguration.parse` reports for `text`, or nil if it parses.
func configError(_ text: String, file: String = "guest.cfg") -> ConfigError? {
    do {
        _ = try DomainConfiguration.parse(text, fileName: file)
        return nil
    } catch {
        return error
    }
}

/// Parses a configuration that must be valid; records an issue otherwise.
func parsed(_ text: String, file: String = "guest.cfg") throws -> DomainConfiguration.Parsed {
    try DomainConfiguration.parse(text, fileName: file)
}

/// A minimal valid configuration followed by `extra` lines.
func config(_ extra: String) -> String {
    "name = \"guest\"\nkernel = \"/usr/bin/agent\"\n" + extra
}
