//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenstoreWire

/// One xenstore operation of a ``DomainPlan``, applied in order (in one
/// transaction per group, as the runtime sees fit).
///
/// JSON form: `{"op": "remove"|"mkdir"|"write"|"introduce", …}` with `path`,
/// `value`, `perms` (`["n0","r5"]`; absent on a write means "inherited from the
/// parent", exactly as an `xs_write` without permissions behaves).
public enum PlanStep: Equatable, Sendable, Codable, CustomStringConvertible {
    /// Remove a subtree if it exists (`xs_rm`), clearing leftovers of an
    /// earlier domain with the same id before writing.
    case remove(path: String)
    /// Create a directory node (value "") and set its permissions.
    case mkdir(path: String, permissions: XenstorePermissions)
    /// Write a value; with permissions, set them on the node afterwards.
    case write(path: String, value: String, permissions: XenstorePermissions?)
    /// Introduce the domain to xenstored (XS_INTRODUCE) with its store ring
    /// frame and event-channel port.
    case introduce(domain: DomID, storeFrame: PageFrame, storePort: EvtchnPort)

    /// The node path the step touches; nil for `introduce`.
    public var path: String? {
        switch self {
        case .remove(let path), .mkdir(let path, _), .write(let path, _, _): path
        case .introduce: nil
        }
    }

    public var description: String {
        switch self {
        case .remove(let path): "rm \(path)"
        case .mkdir(let path, let perms): "mkdir \(path) [\(perms.spaced)]"
        case .write(let path, let value, let perms?): "write \(path) = \"\(value)\" [\(perms.spaced)]"
        case .write(let path, let value, nil): "write \(path) = \"\(value)\""
        case .introduce(let domain, let frame, let port): "introduce \(domain) mfn=\(frame) port=\(port)"
        }
    }

    private enum CodingKeys: String, CodingKey { case op, path, value, perms, domain, frame, port }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try container.decode(String.self, forKey: .op) {
        case "remove":
            self = .remove(path: try container.decode(String.self, forKey: .path))
        case "mkdir":
            self = .mkdir(
                path: try container.decode(String.self, forKey: .path),
                permissions: try XenstorePermissions.decode(container.decode([String].self, forKey: .perms))
            )
        case "write":
            self = .write(
                path: try container.decode(String.self, forKey: .path),
                value: try container.decode(String.self, forKey: .value),
                permissions: try container.decodeIfPresent([String].self, forKey: .perms).map(
                    XenstorePermissions.decode
                )
            )
        case "introduce":
            self = .introduce(
                domain: DomID(try container.decode(UInt16.self, forKey: .domain)),
                storeFrame: PageFrame(try container.decode(UInt64.self, forKey: .frame)),
                storePort: EvtchnPort(try container.decode(UInt32.self, forKey: .port))
            )
        case let other:
            throw DecodingError.dataCorruptedError(
                forKey: .op,
                in: container,
                debugDescription: "unknown plan step '\(other)'"
            )
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .remove(let path):
            try container.encode("remove", forKey: .op)
            try container.encode(path, forKey: .path)
        case .mkdir(let path, let perms):
            try container.encode("mkdir", forKey: .op)
            try container.encode(path, forKey: .path)
            try container.encode(perms.texts, forKey: .perms)
        case .write(let path, let value, let perms):
            try container.encode("write", forKey: .op)
            try container.encode(path, forKey: .path)
            try container.encode(value, forKey: .value)
            try container.encodeIfPresent(perms?.texts, forKey: .perms)
        case .introduce(let domain, let frame, let port):
            try container.encode("introduce", forKey: .op)
            try container.encode(domain.rawValue, forKey: .domain)
            try container.encode(frame.rawValue, forKey: .frame)
            try container.encode(port.rawValue, forKey: .port)
        }
    }
}

extension XenstorePermissions {
    /// Entries separated by spaces, as plans print them: `n0 r5`.
    public var spaced: String { texts.joined(separator: " ") }

    /// Each entry's text, owner first: a plan's JSON form, `["n0", "r5"]`.
    var texts: [String] { entries.map(\.description) }

    /// Parses a plan's JSON form.
    static func decode(_ texts: [String]) throws -> XenstorePermissions {
        let entries = texts.compactMap { XenstorePermission($0) }
        guard entries.count == texts.count, let permissions = XenstorePermissions(entries: entries) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: [], debugDescription: "invalid permission list \(texts)")
            )
        }
        return permissions
    }
}

/// Everything about the running system that the plan needs and the
/// configuration does not say. The runtime fills it in after creating the
/// domain; the pure core only turns it into xenstore operations.
public struct PlanContext: Sendable {
    /// The new domain's id.
    public var domid: DomID
    /// The UUID to use when the configuration has none (the caller generates
    /// it; the pure core has no randomness). Ignored when the configuration has one.
    public var uuid: String?
    /// The console backend domain (`/tool/xenconsoled/domid`, default 0).
    public var consoleBackend: DomID
    /// The xenstore domain (`/tool/xenstored/domid`, default 0): the remote
    /// end of the store event channel. Recorded in the plan for the runtime.
    public var xenstoreDomain: DomID
    /// The toolstack domain: the backend of channels without `backend=`
    /// (libxl's `LIBXL_TOOLSTACK_DOMID`, 0).
    public var toolstackDomain: DomID
    /// Console 0's ring frame (MFN for PV, GFN for translated guests), written
    /// to `console/ring-ref`.
    public var consoleRingFrame: PageFrame
    /// Console 0's event-channel port in the guest, written to `console/port`.
    public var consolePort: EvtchnPort
    /// The xenstore ring frame and port; when both are given the plan writes
    /// `store/ring-ref` and `store/port` and ends the build with `introduce`.
    public var storeRingFrame: PageFrame?
    public var storePort: EvtchnPort?
    /// Resolves a channel's `backend=` domain name to a domid (libxl's
    /// `libxl_name_to_domid`). All-digit qualifiers never reach it: they are ids.
    public var resolveDomainName: @Sendable (String) -> DomID?

    public init(
        domid: DomID,
        uuid: String? = nil,
        consoleBackend: DomID = .dom0,
        xenstoreDomain: DomID = .dom0,
        toolstackDomain: DomID = .dom0,
        consoleRingFrame: PageFrame,
        consolePort: EvtchnPort,
        storeRingFrame: PageFrame? = nil,
        storePort: EvtchnPort? = nil,
        resolveDomainName: @escaping @Sendable (String) -> DomID? = { $0 == "Domain-0" ? .dom0 : nil }
    ) {
        self.domid = domid
        self.uuid = uuid
        self.consoleBackend = consoleBackend
        self.xenstoreDomain = xenstoreDomain
        self.toolstackDomain = toolstackDomain
        self.consoleRingFrame = consoleRingFrame
        self.consolePort = consolePort
        self.storeRingFrame = storeRingFrame
        self.storePort = storePort
        self.resolveDomainName = resolveDomainName
    }
}

/// One console device the plan creates (console 0 or a channel).
public struct PlannedConsole: Equatable, Sendable, Codable {
    public var devid: Int
    /// The channel name; nil for console 0.
    public var name: String?
    /// The resolved backend domid.
    public var backend: UInt16
    public var frontendPath: String
    public var backendPath: String
    /// The toolstack's private copy (`/libxl/<d>/device/console/<devid>`).
    public var libxlPath: String
}

/// The node a step leaves behind, as replayed by ``DomainPlan/simulatedStore()``.
public struct PlannedNode: Equatable, Sendable {
    public var value: String
    public var permissions: XenstorePermissions
}

/// A documented difference between what libxl writes and what Conch writes.
public struct PlanDeviation: Equatable, Sendable, Codable {
    public enum Kind: String, Equatable, Sendable, Codable {
        /// Conch writes the node with a different value.
        case value
        /// Conch does not write the node at all.
        case omitted
    }

    /// The node, with `<d>` the domain, `<b>` a backend domain, `<devid>` the
    /// console number and `<uuid>` the domain's UUID.
    public var path: String
    public var kind: Kind
    /// What libxl writes there.
    public var libxl: String
    /// What Conch writes there ("-" when omitted).
    public var conch: String
    public var reason: String
}

/// The exact xenstore operations libxl performs to set up a domain's home,
/// console 0 and channels (reference §5.1; `libxl__domain_make`,
/// `libxl__build_post`, `libxl__device_console_add`, `libxl__device_generic_add`),
/// with the differences listed in ``deviations``.
///
/// Permission sets (domain d, backend b): the domain home and its `cpu`,
/// `memory`, `device`, `control` directories are `n0 r<d>` (read-only to the
/// guest); the guest-writable nodes (`control/shutdown`, `data`, …) are `n<d>`;
/// `/vm/<uuid>` is `n0 r<d>`; `/libxl/<d>` is `n0`. Devices use FE-perms
/// `n<d> r<b>` and RO-perms `n<b> r<d>`: console 0's frontend directory is RO,
/// a channel's is FE; `backend-id` (and for channels `state`, `protocol`) are
/// FE; `name`, `limit`, `type`, `output`, `tty` (and console 0's `port`,
/// `ring-ref`) are RO; the backend directory is RO; `backend`/`frontend` links
/// and the backend's entries inherit their directory's permissions.
public struct DomainPlan: Equatable, Sendable, Codable {
    public var domid: UInt16
    public var uuid: String
    public var xenstoreDomain: UInt16
    /// Console 0 first, then the channels in devid order.
    public var consoles: [PlannedConsole]
    public var steps: [PlanStep]

    /// libxl's console buffer limit (`LIBXL_XENCONSOLE_LIMIT`), written to `limit`.
    public static let consoleLimit = 1_048_576
    /// The console protocol (`LIBXL_XENCONSOLE_PROTOCOL`).
    public static let consoleProtocol = "vt100"
    /// The `type` Conch writes for every console it serves, console 0 and channels.
    public static let consoleType = "xenconsoled"

    /// Builds the plan. Everything is validated and every channel backend is
    /// resolved before the first step is produced, so a failure leaves nothing
    /// half built.
    ///
    /// - Throws: ``DomainValidationError`` with libxl's message for invalid
    ///   channels, or a Conch message for an unusable context.
    public static func make(
        for configuration: DomainConfiguration,
        context: PlanContext
    )
        throws(DomainValidationError) -> DomainPlan
    {
        try configuration.validate()
        let d = context.domid
        guard d.isRealDomain, d != .dom0 else {
            throw DomainValidationError(
                "domid \(d) cannot be given to a new guest: use 1 to \(DomID.firstReserved.rawValue - 1)"
            )
        }
        guard context.consoleBackend.isRealDomain else {
            throw DomainValidationError("console backend domid \(context.consoleBackend) is not a real domain")
        }
        guard let rawUUID = configuration.uuid ?? context.uuid else {
            throw DomainValidationError("the domain has no uuid: the caller must generate one (PlanContext.uuid)")
        }
        guard let uuid = canonicalUUID(rawUUID) else {
            throw DomainValidationError("Failed to parse UUID: \(rawUUID)")
        }
        var channelBackends: [DomID] = []
        for channel in configuration.channels {
            channelBackends.append(try resolveBackend(of: channel, context: context))
        }

        var builder = PlanBuilder(domid: d)
        builder.domainHome(configuration: configuration, uuid: uuid)
        builder.buildPost(configuration: configuration, context: context)
        // libxl adds the channels before console 0 (`domcreate_launch_dm`).
        var consoles: [PlannedConsole] = []
        for (channel, backend) in zip(configuration.channels, channelBackends) {
            consoles.append(builder.channel(channel, backend: backend))
        }
        consoles.insert(builder.primaryConsole(context: context), at: 0)
        return DomainPlan(
            domid: d.rawValue,
            uuid: uuid,
            xenstoreDomain: context.xenstoreDomain.rawValue,
            consoles: consoles,
            steps: builder.steps
        )
    }

    /// libxl's `libxl_domain_qualifier_to_domid`: all digits means a domid,
    /// anything else is a name to look up.
    private static func resolveBackend(
        of channel: ChannelConfiguration,
        context: PlanContext
    )
        throws(DomainValidationError) -> DomID
    {
        guard let qualifier = channel.backend else { return context.toolstackDomain }
        if !qualifier.isEmpty, qualifier.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }) {
            guard let value = UInt16(qualifier), DomID(value).isRealDomain else {
                throw DomainValidationError(
                    "channel \(channel.devid) backend domain id \(qualifier) is not a valid domain id"
                )
            }
            return DomID(value)
        }
        guard let resolved = context.resolveDomainName(qualifier), resolved.isRealDomain else {
            throw DomainValidationError(
                "channel \(channel.devid) backend domain '\(qualifier)' does not exist: "
                    + "give a running domain's name or id"
            )
        }
        return resolved
    }

    /// The subtrees to remove when the domain is destroyed: each console's
    /// backend directory, then each backend's `backend/console/<d>` directory,
    /// then the domain home, `/vm/<uuid>` and `/libxl/<d>`.
    public var teardownPaths: [String] {
        Self.teardownPaths(
            domid: DomID(domid),
            uuid: uuid,
            consoles: consoles.map { (devid: $0.devid, backend: DomID($0.backend)) }
        )
    }

    /// ``teardownPaths`` for a domain whose plan is not at hand (for example
    /// reconstructed from `/libxl/<d>/device/console`).
    public static func teardownPaths(
        domid: DomID,
        uuid: String?,
        consoles: [(devid: Int, backend: DomID)]
    )
        -> [String]
    {
        var paths = consoles.map { backendPath(domid: domid, devid: $0.devid, backend: $0.backend) }
        var seen = Set<DomID>()
        for console in consoles where seen.insert(console.backend).inserted {
            paths.append(ConsoleLayout.backends(of: domid, backend: console.backend))
        }
        paths.append("/local/domain/\(domid)")
        if let uuid { paths.append("/vm/\(uuid)") }
        paths.append("/libxl/\(domid)")
        return paths
    }

    static func frontendPath(domid: DomID, devid: Int) -> String { ConsoleLayout.frontend(domid, devid: devid) }

    static func backendPath(domid: DomID, devid: Int, backend: DomID) -> String {
        ConsoleLayout.backend(of: domid, devid: devid, backend: backend)
    }

    /// Replays the steps on an empty store with xenstored's rules: a node
    /// created implicitly (as the parent of a written node) or written without
    /// permissions takes its parent's permissions; `remove` deletes a subtree.
    /// Tests and `--dry-run` use it to show the resulting tree.
    public func simulatedStore() -> [String: PlannedNode] {
        var store: [String: PlannedNode] = ["/": PlannedNode(value: "", permissions: XenstorePermissions(owner: .dom0))]
        func parent(of path: String) -> String {
            guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
            return String(path[..<slash])
        }
        func ensure(_ path: String) {
            guard store[path] == nil else { return }
            let up = parent(of: path)
            ensure(up)
            store[path] = PlannedNode(
                value: "",
                permissions: store[up]?.permissions ?? XenstorePermissions(owner: .dom0)
            )
        }
        for step in steps {
            switch step {
            case .remove(let path):
                for key in store.keys where key == path || key.hasPrefix(path + "/") { store[key] = nil }
            case .mkdir(let path, let perms):
                ensure(path)
                store[path]?.permissions = perms
            case .write(let path, let value, let perms):
                ensure(path)
                store[path]?.value = value
                if let perms { store[path]?.permissions = perms }
            case .introduce:
                break
            }
        }
        return store
    }

    /// Every node whose value differs from libxl's, and every node libxl writes
    /// that Conch does not, with the reason. Printed by the documentation.
    public static let deviations: [PlanDeviation] = [
        PlanDeviation(
            path: "/local/domain/<d>/device/console/<devid>/type",
            kind: .value,
            libxl: "ioemu",
            conch: "xenconsoled",
            reason: "channels and secondary consoles are served by Conch's consoled, not by QEMU; the type node "
                + "tells a console backend which consoles are its own"
        ),
        PlanDeviation(
            path: "/vm/<uuid>/start_time",
            kind: .omitted,
            libxl: "creation time (seconds.centiseconds)",
            conch: "-",
            reason: "the plan is pure and has no clock; the runtime may add it"
        ),
        PlanDeviation(
            path: "/vm/<uuid>/image/{ostype,kernel,ramdisk,cmdline}",
            kind: .omitted,
            libxl: "PV image metadata (libxl__build_pv)",
            conch: "-",
            reason: "no PV kernel image is loaded: the guest is a host program whose path and arguments are in "
                + "the configuration"
        ),
        PlanDeviation(
            path: "/libxl/<d>/dm-version",
            kind: .omitted,
            libxl: "qemu_xen",
            conch: "-",
            reason: "Conch runs no device model; libxl would start a dom0 QEMU to serve the channels"
        ),
        PlanDeviation(
            path: "/local/domain/<b>/device-model/<d>/…",
            kind: .omitted,
            libxl: "QEMU state and chardev nodes",
            conch: "-",
            reason: "no QEMU: consoled serves every console"
        ),
        PlanDeviation(
            path: "/local/domain/<d>/platform/…, xsdata keys",
            kind: .omitted,
            libxl: "platform data and extra xenstore keys from the config",
            conch: "-",
            reason: "the xl keys that feed them are not supported and are ignored with a warning"
        ),
        PlanDeviation(
            path: "/local/domain/<d>/{libxl,device-model}",
            kind: .omitted,
            libxl: "directories for driver domains (driver_domain=1)",
            conch: "-",
            reason: "driver domains are not supported"
        ),
        PlanDeviation(
            path: "/local/domain/<d>/memory/videoram",
            kind: .value,
            libxl: "video memory in KiB (HVM default depends on the device model)",
            conch: "0",
            reason: "there is no emulated graphics; for HVM this also means memory/target is not reduced by "
                + "video memory"
        ),
    ]
}

/// Accumulates the steps in libxl's order.
private struct PlanBuilder {
    let d: DomID
    var steps: [PlanStep] = []

    init(domid: DomID) { d = domid }

    var home: String { "/local/domain/\(d)" }
    /// `n0 r<d>`: owned by dom0, the guest may read (libxl's `roperm`).
    var readOnly: XenstorePermissions { XenstorePermissions(owner: .dom0, acl: [XenstorePermission(.read, d)]) }
    /// `n<d>`: owned by the guest (libxl's `rwperm`).
    var guestOwned: XenstorePermissions { XenstorePermissions(owner: d) }
    /// `n0`: toolstack only (libxl's `noperm`).
    var toolstackOnly: XenstorePermissions { XenstorePermissions(owner: .dom0) }

    mutating func write(_ path: String, _ value: String, _ perms: XenstorePermissions? = nil) {
        steps.append(.write(path: path, value: value, permissions: perms))
    }

    /// `libxl__domain_make`: the domain's home, `/vm/<uuid>` and `/libxl/<d>`.
    mutating func domainHome(configuration: DomainConfiguration, uuid: String) {
        let vm = "/vm/\(uuid)"
        let libxl = "/libxl/\(d)"
        steps += [
            .remove(path: home), .mkdir(path: home, permissions: readOnly),
            .remove(path: vm), .mkdir(path: vm, permissions: readOnly),
            .remove(path: libxl), .mkdir(path: libxl, permissions: toolstackOnly),
            .mkdir(path: "\(libxl)/device", permissions: toolstackOnly),
        ]
        write("\(home)/vm", vm)
        write("\(home)/name", configuration.name)
        var readOnlyDirectories = ["cpu", "memory", "device", "control"]
        if configuration.type == .hvm { readOnlyDirectories.append("hvmloader") }
        for directory in readOnlyDirectories {
            steps.append(.mkdir(path: "\(home)/\(directory)", permissions: readOnly))
        }
        var guestNodes = [
            "control/shutdown", "control/feature-poweroff", "control/feature-reboot",
            "control/feature-suspend",
        ]
        if configuration.type == .hvm { guestNodes += ["control/feature-s3", "control/feature-s4"] }
        guestNodes += ["control/sysrq", "device/suspend/event-channel", "data", "drivers", "feature", "attr", "error"]
        for node in guestNodes {
            steps.append(.mkdir(path: "\(home)/\(node)", permissions: guestOwned))
        }
        write("\(vm)/uuid", uuid)
        write("\(vm)/name", configuration.name)
        write("\(home)/control/platform-feature-multiprocessor-suspend", "1")
        write("\(home)/control/platform-feature-xs_reset_watches", "1")
        write("\(libxl)/type", configuration.type.rawValue)
    }

    /// `libxl__build_post`: memory, domid, store details, vCPU availability,
    /// then the introduction to xenstored.
    mutating func buildPost(configuration: DomainConfiguration, context: PlanContext) {
        let maxKiB = configuration.maxMemory * 1024
        // libxl__get_targetmem_fudge: HVM guests that can balloon up keep
        // LIBXL_MAXMEM_CONSTANT (1 MiB) back; video memory is 0 here.
        let fudge = configuration.type == .hvm && configuration.maxMemory > configuration.memory ? 1024 : 0
        write("\(home)/memory/static-max", String(maxKiB))
        write("\(home)/memory/target", String(configuration.memory * 1024 - fudge))
        write("\(home)/memory/videoram", "0")
        write("\(home)/domid", String(d.rawValue))
        if let port = context.storePort, let frame = context.storeRingFrame {
            write("\(home)/store/port", String(port.rawValue))
            write("\(home)/store/ring-ref", String(frame.rawValue))
        }
        for vcpu in 0..<configuration.maxVCPUs {
            write("\(home)/cpu/\(vcpu)/availability", vcpu < configuration.vcpus ? "online" : "offline")
        }
        if let port = context.storePort, let frame = context.storeRingFrame {
            steps.append(.introduce(domain: d, storeFrame: frame, storePort: port))
        }
    }

    /// A channel as console `devid` (`libxl__init_console_from_channel`).
    mutating func channel(_ channel: ChannelConfiguration, backend: DomID) -> PlannedConsole {
        let connectionNodes: [(String, String)]
        let output: String
        switch channel.connection {
        case .socket(let path)?:
            connectionNodes = [("connection", "socket"), ("path", path)]
            output = "chardev:libxl-channel\(channel.devid)"
        case .pty?, nil:
            // nil cannot reach here: validate() refused it.
            connectionNodes = [("connection", "pty")]
            output = "pty"
        }
        let name = channel.name ?? ""
        return device(
            devid: channel.devid,
            backend: backend,
            name: name,
            frontendExtra: [("state", "1"), ("protocol", DomainPlan.consoleProtocol)],
            readOnlyEntries: [
                ("name", name), ("limit", String(DomainPlan.consoleLimit)), ("type", DomainPlan.consoleType),
                ("output", output), ("tty", ""),
            ],
            backendExtra: [("name", name)] + connectionNodes
        )
    }

    /// Console 0 (`init_console_info` + `libxl__device_console_add` with state).
    mutating func primaryConsole(context: PlanContext) -> PlannedConsole {
        device(
            devid: 0,
            backend: context.consoleBackend,
            name: nil,
            frontendExtra: [],
            readOnlyEntries: [
                ("limit", String(DomainPlan.consoleLimit)), ("type", DomainPlan.consoleType), ("output", "pty"),
                ("tty", ""), ("port", String(context.consolePort.rawValue)),
                ("ring-ref", String(context.consoleRingFrame.rawValue)),
            ],
            backendExtra: []
        )
    }

    /// `libxl__device_generic_add`: the private copy, the frontend, the backend.
    private mutating func device(
        devid: Int,
        backend b: DomID,
        name: String?,
        frontendExtra: [(String, String)],
        readOnlyEntries: [(String, String)],
        backendExtra: [(String, String)]
    ) -> PlannedConsole {
        let frontend = DomainPlan.frontendPath(domid: d, devid: devid)
        let backendPath = DomainPlan.backendPath(domid: d, devid: devid, backend: b)
        let libxl = "/libxl/\(d)/device/console/\(devid)"
        let fePerms = XenstorePermissions(owner: d, acl: [XenstorePermission(.read, b)])
        let roPerms = XenstorePermissions(owner: b, acl: [XenstorePermission(.read, d)])
        let backendEntries: [(String, String)] =
            [
                ("frontend-id", String(d.rawValue)), ("online", "1"), ("state", "1"),
                ("protocol", DomainPlan.consoleProtocol),
            ] + backendExtra

        steps.append(.remove(path: libxl))
        write("\(libxl)/frontend", frontend)
        write("\(libxl)/backend", backendPath)

        steps.append(.remove(path: frontend))
        // Console 0's directory is read-only to the guest: it historically
        // holds other data (vnc-port…) and has no xenbus state machine.
        steps.append(.mkdir(path: frontend, permissions: devid == 0 ? roPerms : fePerms))
        write("\(frontend)/backend", backendPath)
        for (key, value) in [("backend-id", String(b.rawValue))] + frontendExtra {
            write("\(frontend)/\(key)", value, fePerms)
        }
        for (key, value) in readOnlyEntries { write("\(frontend)/\(key)", value, roPerms) }

        steps.append(.remove(path: backendPath))
        steps.append(.mkdir(path: backendPath, permissions: roPerms))
        write("\(backendPath)/frontend", frontend)
        for (key, value) in backendEntries { write("\(backendPath)/\(key)", value) }

        for (key, value) in backendEntries { write("\(libxl)/\(key)", value) }
        return PlannedConsole(
            devid: devid,
            name: name,
            backend: b.rawValue,
            frontendPath: frontend,
            backendPath: backendPath,
            libxlPath: libxl
        )
    }
}

/// libxl's UUID text check (8-4-4-4-12 hex digits, either case), returning
/// the lowercase form libxl writes to xenstore.
func canonicalUUID(_ text: String) -> String? {
    let scalars = Array(text.unicodeScalars)
    guard scalars.count == 36 else { return nil }
    for (offset, scalar) in scalars.enumerated() {
        if [8, 13, 18, 23].contains(offset) {
            guard scalar == "-" else { return nil }
        } else {
            guard scalar.properties.isASCIIHexDigit else { return nil }
        }
    }
    return text.lowercased()
}
