//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Toolstack
import XenABI

/// The toolstack's own record of a domain it built — its configuration and plan
/// — kept as JSON in `<run-dir>/domains/<domid>.json`, as libxl keeps a domain's
/// configuration in its userdata. `channel-attach` and `channel-detach` update it.
public struct DomainRecord: Codable, Sendable, Equatable {
    public var domid: UInt16
    public var configuration: DomainConfiguration
    public var plan: DomainPlan
    /// Where relative paths in the configuration were resolved from.
    public var configurationFile: String?

    public init(domid: UInt16, configuration: DomainConfiguration, plan: DomainPlan, configurationFile: String?) {
        self.domid = domid
        self.configuration = configuration
        self.plan = plan
        self.configurationFile = configurationFile
    }

    /// The records' directory inside a run directory.
    public static func directory(runDirectory: String) -> String { runDirectory + "/domains" }

    static func path(runDirectory: String, domid: UInt16) -> String {
        directory(runDirectory: runDirectory) + "/\(domid).json"
    }

    public static func load(runDirectory: String, domid: UInt16) -> DomainRecord? {
        guard let data = FileManager.default.contents(atPath: path(runDirectory: runDirectory, domid: domid)) else {
            return nil
        }
        if let record = try? JSONDecoder().decode(DomainRecord.self, from: data) { return record }
        // Records written before the configuration's key became `maxVcpus` (so that
        // snake_case output reads back) name it `maxVCPUs`: a domain created by an
        // older conch is still this toolstack's.
        let legacy = String(decoding: data, as: UTF8.self)
        guard legacy.contains(#""maxVCPUs""#) else { return nil }
        let migrated = legacy.replacingOccurrences(of: #""maxVCPUs""#, with: #""maxVcpus""#)
        return try? JSONDecoder().decode(DomainRecord.self, from: Data(migrated.utf8))
    }

    /// Writes the record atomically (readers never see half a file).
    public func save(runDirectory: String) throws {
        try FileManager.default.createDirectory(
            atPath: Self.directory(runDirectory: runDirectory),
            withIntermediateDirectories: true
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let url = URL(fileURLWithPath: Self.path(runDirectory: runDirectory, domid: domid))
        try encoder.encode(self).write(to: url, options: .atomic)
    }

    public static func remove(runDirectory: String, domid: UInt16) {
        try? FileManager.default.removeItem(atPath: path(runDirectory: runDirectory, domid: domid))
    }
}
