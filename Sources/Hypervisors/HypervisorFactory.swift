//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import SystemExtras
import XenHypervisor
import XenLinux
import XenSim

/// The one place an executable chooses the hypervisor implementation: Conch's
/// simulated hypervisor (through a run directory), or the real Xen under a dom0.
public enum HypervisorFactory {
    public enum Backend: Sendable, Equatable {
        /// Conch's simulated hypervisor, reached through a run directory.
        case simulated(RunDirectory)
        /// The Xen this process runs under, as dom0 (`/dev/xen/*`).
        case xen
    }

    /// What a user asked for on the command line (`--hypervisor`).
    public enum Choice: String, Sendable, CaseIterable {
        /// Real Xen when this host is a Xen dom0, the simulator otherwise.
        case auto
        case simulated
        case xen
    }

    /// Whether this host is a Xen control domain: `/proc/xen/capabilities` (xenfs)
    /// says `control_d`.
    public static var hostIsXenDom0: Bool { XenHost.isControlDomain }

    /// Whether this `conch` was built with the real-Xen backend (the `RealXen`
    /// trait, on by default where libxen-dev is installed).
    public static var realXenBuiltIn: Bool {
        #if RealXen
        true
        #else
        false
        #endif
    }

    /// Resolves a choice: `auto` is real Xen exactly when this host is a dom0.
    public static func backend(_ choice: Choice, runDirectory: RunDirectory) -> Backend {
        switch choice {
        case .simulated: .simulated(runDirectory)
        case .xen: .xen
        case .auto: hostIsXenDom0 ? .xen : .simulated(runDirectory)
        }
    }

    public static func privileged(_ backend: Backend) throws -> any PrivilegedHypervisor {
        switch backend {
        case .simulated(let runDirectory): return try SimHypervisorClient.connect(runDirectory: runDirectory)
        case .xen:
            #if RealXen
            return try XenDom0Hypervisor()
            #else
            throw HypervisorError.unavailable(
                "this conch was built without Xen's libraries: install libxen-dev and rebuild "
                    + "(swift build --traits RealXen)"
            )
            #endif
        }
    }

    /// Inside a guest process: the connection the hypervisor gave it.
    public static func guest() throws -> any GuestHypervisor {
        try SimHypervisorClient.guest()
    }
}
