//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Toolstack
import XenABI

/// xl.cfg text, as a user (or a file someone else wrote) supplies it: lexed,
/// parsed, validated and planned into the xenstore layout, as `conch create
/// --dry-run` does.
///
/// Checked: nothing traps; a configuration that validates yields a plan whose
/// every path is absolute and whose channels' names pass ``NameRules``.
public enum XLConfigFuzzHarness {
    public static func run(_ data: UnsafeRawBufferPointer) {
        let text = String(decoding: data, as: UTF8.self)
        guard let parsed = try? DomainConfiguration.parse(text, fileName: "fuzz.cfg") else { return }
        let configuration = parsed.configuration
        guard (try? configuration.validate()) != nil else { return }
        let context = PlanContext(
            domid: DomID(7),
            uuid: "00000000-0000-0000-0000-000000000007",
            consoleRingFrame: PageFrame(1),
            consolePort: EvtchnPort(1),
            storeRingFrame: PageFrame(2),
            storePort: EvtchnPort(2)
        )
        guard let plan = try? DomainPlan.make(for: configuration, context: context) else { return }
        for step in plan.steps {
            if let path = step.path { precondition(path.hasPrefix("/"), "a relative path in a plan: \(path)") }
        }
        for channel in configuration.channels {
            precondition(NameRules.problem(with: channel.name ?? "", what: "channel") == nil, "a bad name validated")
        }
        _ = ChannelList.format([])
    }
}
