//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import SystemExtras

/// One-line JSON, conch's convention (``JSONOutput``): what every `conch bench … --json` prints.
public func benchmarkJSON(_ value: some Encodable) throws -> String {
    try JSONOutput.string(value)
}
