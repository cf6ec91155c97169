// swift-tools-version: 6.1
//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import PackageDescription

/// `conch` links the Swift runtime and Foundation statically (see its target).
/// ThreadSanitizer's runtime does not work with that, so sanitizer builds opt
/// out: `CONCH_DYNAMIC_STDLIB=1 swift test --sanitize=thread …`.
let staticStdlib = ProcessInfo.processInfo.environment["CONCH_DYNAMIC_STDLIB"] == nil

/// The real-Xen backend links Xen's stable libraries (Debian's libxen-dev). It is
/// built by default where they are installed, so one `conch` serves the simulator
/// and a real dom0 alike (the choice is made at run time); elsewhere the package
/// builds without it (`--traits RealXen` forces it, `--disable-default-traits` drops it).
let xenLibrariesInstalled = FileManager.default.fileExists(atPath: "/usr/include/xenctrl.h")

// Dependency rule (see docs/ARCHITECTURE.md): the pure cores — XenABI, XenMemory,
// XenRing — import only the standard library (Synchronization's atomics included),
// so that they also build for the embedded PV guest kernel (guest/pv). Anything that
// touches the OS lives in an I/O shell (SystemExtras and above).

let package = Package(
    name: "Conch",
    products: [
        .executable(name: "conch", targets: ["conch"]),
        .library(name: "XenABI", targets: ["XenABI"]),
        .library(name: "XenRing", targets: ["XenRing"]),
    ],
    traits: [
        .trait(
            name: "RealXen",
            description: "The dom0 backend of the hypervisor seam, over Xen's libraries (needs libxen-dev)."
        ),
        .default(enabledTraits: xenLibrariesInstalled ? ["RealXen"] : []),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
    ],
    targets: [
        // MARK: C shim — only what Glibc does not expose.
        .target(name: "CConchShims"),

        // MARK: Pure cores (no Foundation, no NIO, no I/O).
        .target(name: "XenABI"),
        .target(name: "XenMemory"),
        .target(name: "XenRing", dependencies: ["XenABI", "XenMemory"]),
        .target(name: "Toolstack", dependencies: ["XenABI", "ConsoleCore", "XenstoreWire"]),
        .target(name: "ConsoleCore", dependencies: ["XenABI"]),
        .target(name: "XenstoreWire", dependencies: ["XenABI"]),
        .target(
            name: "XenstoreCore",
            dependencies: [
                "XenABI", "XenstoreWire",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),

        // MARK: The hypervisor seam (protocols only), its simulated implementation,
        // the real-Xen (dom0) one, and the one place that chooses.
        .target(name: "XenHypervisor", dependencies: ["XenABI", "XenMemory"]),
        .systemLibrary(name: "CXen", providers: [.apt(["libxen-dev"])]),
        .target(
            name: "XenLinux",
            dependencies: [
                "XenABI", "XenMemory", "XenHypervisor", "SystemExtras",
                .target(name: "CXen", condition: .when(traits: ["RealXen"])),
            ]
        ),
        .target(name: "Hypervisors", dependencies: ["XenHypervisor", "XenSim", "XenLinux", "SystemExtras"]),
        .target(
            name: "XenSim",
            dependencies: [
                "XenABI", "XenMemory", "XenRing", "XenHypervisor", "SystemExtras", "CConchShims", "ConsoleCore",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // MARK: I/O shells.
        .target(
            name: "SystemExtras",
            dependencies: [
                "CConchShims",
                "XenMemory",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "XenstoreServer",
            dependencies: [
                "XenABI", "XenstoreWire", "XenstoreCore", "XenRing", "XenHypervisor", "SystemExtras", "MetricsEndpoint",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "XenstoreClient",
            dependencies: [
                "XenABI", "XenstoreWire", "XenRing", "XenHypervisor",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The sink keeper: socket channels' listeners and clients, held across consoled's deaths.
        .target(
            name: "ConsoleKeeper",
            dependencies: [
                "ConsoleCore", "SystemExtras",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "MetricsEndpoint",
            dependencies: [
                "SystemExtras",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "ConsoleBackend",
            dependencies: [
                "ConsoleCore", "ConsoleKeeper", "XenABI", "XenRing", "XenHypervisor", "XenstoreClient", "SystemExtras",
                "MetricsEndpoint",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "GuestFrontend",
            dependencies: [
                "ConsoleCore", "XenABI", "XenRing", "XenHypervisor", "XenstoreClient", "SystemExtras",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "DeviceModel",
            dependencies: [
                "XenABI", "XenstoreClient", "SystemExtras",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "ToolstackRuntime",
            dependencies: [
                "Toolstack", "XenABI", "XenRing", "XenHypervisor", "XenstoreClient", "XenstoreWire", "Hypervisors",
                "SystemExtras", "XenSim", "ConsoleCore",
            ]
        ),
        // `conch web`: every console and channel in a browser, as a client of consoled.
        .target(
            name: "WebConsole",
            dependencies: [
                "ToolstackRuntime", "SystemExtras", "XenABI", "XenHypervisor", "ConsoleCore", "XenstoreClient",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Starting, restarting and stopping the host stack's daemons (`conch up`, the demo).
        .target(
            name: "HostSupervision",
            dependencies: [
                "SystemExtras",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "ConchBench",
            dependencies: [
                "XenABI", "XenRing", "XenMemory", "SystemExtras", "XenstoreClient", "XenstoreServer", "XenHypervisor",
                "XenSim", "Hypervisors", "Toolstack", "ToolstackRuntime", "HostSupervision", "ConsoleBackend",
                "XenstoreWire", "ConsoleCore",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),

        // MARK: Fuzzing: harnesses are a library so unit tests replay kept crashes.
        .target(
            name: "FuzzHarnesses",
            dependencies: [
                "XenABI", "XenMemory", "XenRing", "XenstoreWire", "XenstoreCore", "ConsoleCore", "Toolstack", "XenSim",
            ]
        ),
        .executableTarget(name: "FuzzXenstore", dependencies: ["FuzzHarnesses"]),
        .executableTarget(name: "FuzzConsoleRing", dependencies: ["FuzzHarnesses"]),
        .executableTarget(name: "FuzzXenstoreRing", dependencies: ["FuzzHarnesses"]),
        .executableTarget(name: "FuzzHypervisorRequest", dependencies: ["FuzzHarnesses"]),
        .executableTarget(name: "FuzzXLConfig", dependencies: ["FuzzHarnesses"]),

        // MARK: Test doubles and helpers shared by tests and benchmarks.
        .target(
            name: "XenTestKit",
            dependencies: [
                "XenABI", "XenMemory", "XenRing", "XenHypervisor", "XenSim", "Hypervisors", "SystemExtras",
                "XenstoreServer", "XenstoreClient",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // MARK: Test support: the scripted guests the tests run as kernels (not installed).
        .executableTarget(
            name: "conch-test-guest",
            dependencies: [
                "Hypervisors", "XenHypervisor", "XenSim", "XenABI", "XenRing", "XenstoreClient", "XenstoreWire",
                "SystemExtras", "GuestFrontend",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/ConchTestGuest"
        ),

        // MARK: The one executable.
        .executableTarget(
            name: "conch",
            dependencies: [
                "ConchBench", "XenstoreServer", "XenstoreClient", "XenstoreCore", "XenstoreWire", "XenABI",
                "ConsoleKeeper",
                "XenHypervisor", "XenSim", "Hypervisors", "SystemExtras", "ConsoleBackend", "DeviceModel",
                "ConsoleCore", "GuestFrontend", "Toolstack", "ToolstackRuntime", "XenRing", "HostSupervision",
                "WebConsole",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // Every guest kernel, daemon and CLI call is a fresh `conch` process: linking
            // the Swift runtime and Foundation statically halves its start-up (21.5 → 11.9 ms
            // median for `conch version`), which is most of `create`'s time to first byte.
            // (Foundation's own static archives are named explicitly: without
            // `-static-stdlib` at compile time, autolinking does not pull them in.)
            linkerSettings: staticStdlib
                ? [
                    .unsafeFlags(["-static-stdlib"]),
                    .linkedLibrary("_FoundationCShims"), .linkedLibrary("_FoundationCollections"),
                    .linkedLibrary("CoreFoundation"), .linkedLibrary("_FoundationICU"), .linkedLibrary("stdc++"),
                ] : []
        ),

        // MARK: Tests.
        .testTarget(
            name: "XenRingTests",
            dependencies: [
                "XenABI", "XenMemory", "XenRing",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "XenstoreWireTests",
            dependencies: [
                "XenABI", "XenstoreWire", .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "XenstoreCoreTests",
            dependencies: [
                "XenABI", "XenstoreWire", "XenstoreCore", "FuzzHarnesses",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "ToolstackTests",
            dependencies: [
                "Toolstack", "XenABI", "XenstoreWire", "SystemExtras",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "ConsoleCoreTests",
            dependencies: ["ConsoleCore", "XenABI", .product(name: "PropertyBased", package: "swift-property-based")]
        ),
        .testTarget(
            name: "ConformanceTests",
            dependencies: ["XenABI", "XenMemory", "XenRing", "XenTestKit"],
            exclude: ["C"]
        ),
        .testTarget(
            name: "SystemExtrasTests",
            dependencies: ["SystemExtras", "XenABI", "XenMemory", "XenRing", "ConchBench", "XenTestKit"]
        ),
        .testTarget(
            name: "XenstoredTests",
            dependencies: [
                "XenABI", "XenMemory", "XenHypervisor", "XenstoreWire", "XenstoreClient", "XenstoreServer",
                "XenTestKit", "XenRing", "XenstoreCore",
                "SystemExtras",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "HypervisorTests",
            dependencies: [
                "XenABI", "XenMemory", "XenRing", "XenHypervisor", "XenSim", "Hypervisors", "SystemExtras",
                "XenTestKit",
                "XenstoreClient", "XenstoreWire", "Toolstack", "ToolstackRuntime",
            ]
        ),
        .testTarget(
            name: "ConsoleTests",
            dependencies: [
                "XenABI", "XenRing", "XenHypervisor", "XenSim", "XenTestKit", "XenstoreClient", "Toolstack",
                "SystemExtras", "XenMemory",
                "ToolstackRuntime", "ConsoleCore", "ConsoleBackend", "GuestFrontend",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "CLITests",
            dependencies: [
                "XenTestKit", "SystemExtras", "HostSupervision",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .testTarget(
            name: "DeviceModelTests",
            dependencies: ["DeviceModel", "XenABI", "XenTestKit", "XenstoreClient", "SystemExtras"]
        ),
        .testTarget(name: "RealXenTests", dependencies: ["XenTestKit"]),
        .testTarget(
            name: "SecurityTests",
            dependencies: [
                "XenABI", "XenHypervisor", "XenSim", "XenTestKit", "XenstoreClient", "XenstoreWire", "Toolstack",
                "ToolstackRuntime", "SystemExtras", "ConsoleCore",
            ]
        ),
    ]
)
