//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

/// What happens after a domain shuts down for a given reason: xl.cfg's
/// `on_poweroff`, `on_reboot` and `on_crash` (xl.cfg(5), "Event Actions"; the
/// names are libxl's `action_on_shutdown` names). The toolstack parses it and the
/// hypervisor carries it out.
public enum ShutdownAction: String, Equatable, Hashable, Sendable, CaseIterable {
    /// Destroy the domain (xl's default for poweroff and crash).
    case destroy
    /// Destroy it and start it again (xl's default for reboot; restarting is the
    /// toolstack's job).
    case restart
    case renameRestart = "rename-restart"
    /// Keep it, shut down, for inspection.
    case preserve
    case coredumpDestroy = "coredump-destroy"
    case coredumpRestart = "coredump-restart"
    case softReset = "soft-reset"
}

#if !hasFeature(Embedded)
extension ShutdownAction: Codable {}
#endif
