//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenstoreWire

/// How the engine treats each request type (cxenstored's `wire_funcs[]` flags).
struct OperationTraits {
    /// Only privileged connections may send it; others get EACCES.
    let requiresPrivilege: Bool
    /// The header's tx_id is not looked up (WATCH, UNWATCH, RESET_WATCHES).
    let ignoresTransaction: Bool

    /// Nil for types a client may not send: RESTRICT (20), WATCH_EVENT, ERROR, and anything
    /// above 26 — all answered ENOSYS.
    static func of(_ type: XenstoreMessageType) -> OperationTraits? {
        switch type {
        case .directory, .read, .getPerms, .transactionStart, .transactionEnd, .getDomainPath, .write, .mkdir,
            .rm, .setPerms, .directoryPart, .getFeature:
            OperationTraits(requiresPrivilege: false, ignoresTransaction: false)
        case .watch, .unwatch, .resetWatches:
            OperationTraits(requiresPrivilege: false, ignoresTransaction: true)
        case .control, .introduce, .release, .isDomainIntroduced, .resume, .setTarget, .setFeature, .getQuota,
            .setQuota:
            OperationTraits(requiresPrivilege: true, ignoresTransaction: false)
        default:
            nil
        }
    }
}

extension XenstoreEngine {
    /// Checks type, privilege and transaction (in cxenstored's order), then runs the handler.
    mutating func dispatch(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        guard let traits = OperationTraits.of(request.type) else { throw .ENOSYS }
        if traits.requiresPrivilege && !request.caller.privileged { throw .EACCES }
        if !traits.ignoresTransaction && request.message.txID != 0 && !request.inTransaction { throw .ENOENT }

        switch request.type {
        case .read: return try read(request)
        case .directory: return try directory(request)
        case .directoryPart: return try directoryPart(request)
        case .getPerms: return try getPerms(request)
        case .write: return try write(request, mkdir: false)
        case .mkdir: return try write(request, mkdir: true)
        case .rm: return try remove(request)
        case .setPerms: return try setPerms(request)
        case .watch: return try watch(request)
        case .unwatch: return try unwatch(request)
        case .resetWatches: return resetWatches(request)
        case .transactionStart: return try transactionStart(request)
        case .transactionEnd: return try transactionEnd(request)
        case .introduce: return try introduce(request)
        case .release: return try release(request)
        case .resume: return try resume(request)
        case .isDomainIntroduced: return try isDomainIntroduced(request)
        case .getDomainPath: return try getDomainPath(request)
        case .setTarget: return try setTarget(request)
        case .control: return try control(request)
        case .getFeature: return try getFeature(request)
        case .setFeature: return try setFeature(request)
        case .getQuota: return try getQuota(request)
        case .setQuota: return try setQuota(request)
        default: throw .ENOSYS
        }
    }

    // MARK: Shared helpers

    /// The access `connection` has under `perms`, and whether it counts as the owner.
    /// Privileged connections have everything; a SET_TARGET'd domain acts as itself and its target.
    func access(_ caller: Caller, _ perms: XenstorePermissions) -> (access: XenstoreAccess, owner: Bool) {
        if caller.privileged { return (.both, true) }
        var ids = [caller.domid]
        if let target = targets[caller.domid] { ids.append(target) }
        if ids.contains(perms.owner.domid) { return (.both, true) }
        return (ids.reduce(XenstoreAccess.none) { $0.union(perms.access(for: $1)) }, false)
    }

    func canRead(_ caller: Caller, _ perms: XenstorePermissions) -> Bool {
        access(caller, perms).access.canRead
    }

    func canWrite(_ caller: Caller, _ perms: XenstorePermissions) -> Bool {
        access(caller, perms).access.canWrite
    }

    /// Resolves a path argument for `request`'s connection.
    func resolve(
        _ bytes: [UInt8],
        _ request: RequestContext,
        allowSpecial: Bool = false
    ) throws(XenstoreError)
        -> XenstorePath
    {
        let caller = request.caller
        // Privileged connections too: cxenstored applies the path quota to everyone.
        let limit = quotas(for: caller.domid).effectivePathLength
        return try XenstorePath.resolve(
            bytes,
            relativeTo: caller.domainPath,
            allowSpecial: allowSpecial,
            pathLimit: limit
        )
    }

    /// Unprivileged connections are held to quotas; privileged ones are not.
    func limits(_ request: RequestContext) -> Quotas? {
        request.caller.privileged ? nil : quotas(for: request.caller.domid)
    }

    /// Unprivileged connections of `domid` (quotas are per domain).
    func unprivilegedConnections(of domid: DomID) -> some Sequence<Connection> {
        connections.values.lazy.filter { $0.domid == domid && !$0.privileged }
    }

    /// Watch events for every registered watch the triggers match, trigger by trigger.
    func fire(_ triggers: [WatchTrigger]) -> [XenstoreEffect] {
        var effects: [XenstoreEffect] = []
        guard !triggers.isEmpty, !watcherIDs.isEmpty else { return [] }
        for trigger in triggers {
            for id in watcherIDs {
                guard let connection = connections[id] else { continue }
                let matched = connection.watches(matching: trigger)
                guard !matched.isEmpty, mayObserve(connection.caller, trigger) else { continue }
                for watch in matched {
                    let event = XenstoreMessage.watchEvent(
                        path: reportedPath(trigger.path, for: watch, connection.caller),
                        token: watch.token
                    )
                    // Events longer than the payload limit are dropped silently, as cxenstored does.
                    if event.fitsOnWire { effects.append(.send(to: id, event)) }
                }
            }
        }
        return effects
    }

    private func mayObserve(_ caller: Caller, _ trigger: WatchTrigger) -> Bool {
        if caller.privileged { return true }
        if trigger.path.isSpecial {
            return specialPerms[trigger.path.rawValue].map { canRead(caller, $0) } ?? false
        }
        return trigger.perms.contains { canRead(caller, $0) }
    }

    /// A relative watch hears relative paths (the domain path and its `/` stripped).
    func reportedPath(_ path: XenstorePath, for watch: Watch, _ caller: Caller) -> String {
        let prefix = caller.domainPath.rawValue + "/"
        guard watch.path.wasRelative, path.rawValue.hasPrefix(prefix) else { return path.rawValue }
        return String(path.rawValue.dropFirst(prefix.count))
    }
}
