//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import XenABI
import XenstoreWire

/// The domain table and the daemon-level requests: INTRODUCE, RELEASE, RESUME,
/// IS_DOMAIN_INTRODUCED, GET_DOMAIN_PATH, SET_TARGET, CONTROL, GET/SET_FEATURE, GET/SET_QUOTA.
/// All but GET_DOMAIN_PATH and GET_FEATURE without a domid are privileged (checked in dispatch).
extension XenstoreEngine {
    /// A domid argument: decimal, 0…65535 (cxenstored's `atoi` would read garbage as 0; we say EINVAL).
    func parseDomid(_ bytes: [UInt8]) throws(XenstoreError) -> DomID {
        guard let domid = XenstorePayload.domid(bytes) else { throw .EINVAL }
        return domid
    }

    /// Domains the engine knows: dom0 always, others once introduced.
    func exists(_ domid: DomID) -> Bool { domid == .dom0 || domains[domid] != nil }

    /// INTRODUCE `domid|frame|port|` → OK. A new domain gets `.introduceDomain` (before the
    /// reply, so its ring exists when the toolstack hears OK) and, unless it is dom0, an
    /// `@introduceDomain` event. An introduced one only gets `.rebindDomain`.
    mutating func introduce(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let arguments = try XenstorePayload.arguments(request.message.payload, count: 3)
        let domid = try parseDomid(arguments[0])
        guard domid.isRealDomain, let frame = XenstorePayload.decimal(arguments[1], as: UInt64.self),
            let port = XenstorePayload.decimal(arguments[2], as: UInt32.self), port > 0
        else { throw .EINVAL }
        if domains[domid] != nil {
            domains[domid]?.port = port
            return [.rebindDomain(domid, port: port), request.ok]
        }
        let features = pendingFeatures.removeValue(forKey: domid) ?? supportedFeatures
        domains[domid] = DomainEntry(frame: frame, port: port, features: features)
        let events = domid == .dom0 ? [] : fire([WatchTrigger(special: SpecialPath.introduceDomain)])
        return [.introduceDomain(domid, frame: frame, port: port), request.ok] + events
    }

    /// RELEASE `domid|` → OK; EINVAL for dom0, ENOENT if not introduced. Then as ``teardown(_:)``.
    mutating func release(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let domid = try parseDomid(XenstorePayload.singleArgument(request.message.payload))
        guard domid != .dom0 else { throw .EINVAL }
        guard domains[domid] != nil else { throw .ENOENT }
        return [request.ok] + teardown(domid)
    }

    /// Forgets a domain: removes the nodes it owns (firing their watches), fires
    /// `@releaseDomain`, strips it from the special paths' permissions, and tells the shell.
    mutating func teardown(_ domid: DomID) -> [XenstoreEffect] {
        domains[domid] = nil
        domainQuotas[domid] = nil
        targets[domid] = nil
        var triggers: [WatchTrigger] = []
        let generation = nextGeneration()
        for path in store.outermostNodes(ownedBy: domid) {
            triggers += removalTriggers(store.remove(path, generation: generation))
        }
        triggers.append(WatchTrigger(special: SpecialPath.releaseDomain))
        let effects = fire(triggers)
        for key in Array(specialPerms.keys) {
            specialPerms[key]?.acl.removeAll { $0.domid == domid }
        }
        return effects + [.releaseDomain(domid)]
    }

    /// RESUME `domid|` → OK: `@releaseDomain` may fire again on the next shutdown.
    mutating func resume(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let domid = try parseDomid(XenstorePayload.singleArgument(request.message.payload))
        guard domains[domid] != nil else { throw .ENOENT }
        domains[domid]?.shutdownReported = false
        return [request.ok]
    }

    /// IS_DOMAIN_INTRODUCED `domid|` → `T|` or `F|`; DOMID_SELF and dom0 are always T.
    mutating func isDomainIntroduced(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let domid = try parseDomid(XenstorePayload.singleArgument(request.message.payload))
        let introduced = domid == .domSelf || exists(domid)
        return [request.reply(XenstorePayload.string(introduced ? "T" : "F"))]
    }

    /// GET_DOMAIN_PATH `domid|` → `/local/domain/<domid>|`. Open to every connection.
    mutating func getDomainPath(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let domid = try parseDomid(XenstorePayload.singleArgument(request.message.payload))
        return [request.reply(XenstorePayload.string(XenstorePath.domainPath(domid)))]
    }

    /// SET_TARGET `domid|target|` → OK: `domid` then acts with `target`'s rights as well as its
    /// own. Both must be real domids (EINVAL). cxenstored also wants both to exist in the
    /// hypervisor; the engine cannot see that, and toolstacks may set a target before INTRODUCE.
    mutating func setTarget(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let arguments = try XenstorePayload.arguments(request.message.payload, count: 2)
        let domid = try parseDomid(arguments[0])
        let target = try parseDomid(arguments[1])
        guard domid.isRealDomain, target.isRealDomain else { throw .EINVAL }
        // Both must be known domains (dom0, or introduced), as in cxenstored.
        guard exists(domid), exists(target) else { throw .ENOENT }
        targets[domid] = target
        return [request.ok]
    }

    /// CONTROL `command|[param|]...`. A harmless subset: `check` (→ OK, or EIO if the store's
    /// invariants are broken), `print|text|` (→ OK and a `.log` effect), `help` (→ the command
    /// list). Anything else is EINVAL.
    mutating func control(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let arguments = try XenstorePayload.arguments(request.message.payload)
        guard let command = arguments.first else { throw .EINVAL }
        switch String(decoding: command, as: UTF8.self) {
        case "check":
            guard invariantViolations().isEmpty else { throw .EIO }
            return [request.ok]
        case "print":
            guard arguments.count == 2 else { throw .EINVAL }
            return [.log(String(decoding: arguments[1], as: UTF8.self)), request.ok]
        case "help":
            return [request.reply(XenstorePayload.string("check\nprint <string>\nhelp\n"))]
        default:
            throw .EINVAL
        }
    }

    /// Problems with the store's invariants, for CONTROL `check` and tests.
    func invariantViolations() -> [String] {
        var problems = store.invariantViolations(generation: generation)
        let watching = connections.filter { !$0.value.watches.isEmpty }.map(\.key)
        if watching != watcherIDs { problems.append("watcher index \(watcherIDs) != \(watching)") }
        for connection in connections.values {
            for transaction in connection.transactions.values {
                problems += transaction.tree.invariantViolations(generation: generation)
            }
        }
        return problems
    }

    // MARK: Features and quotas (xenstore.txt in master)

    /// Treats an empty payload and a single empty string alike: "no arguments".
    func optionalArguments(_ payload: [UInt8]) throws(XenstoreError) -> [[UInt8]] {
        let arguments = try XenstorePayload.arguments(payload)
        return arguments == [[]] ? [] : arguments
    }

    /// GET_FEATURE `[domid|]` → the decimal feature bitmap: the caller's own without a domid,
    /// the named domain's with one (privileged only).
    mutating func getFeature(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let arguments = try optionalArguments(request.message.payload)
        let features: XenstoreServerFeatures
        if arguments.isEmpty {
            features = serverFeatures(for: request.caller.domid)
        } else {
            guard request.caller.privileged else { throw .EACCES }
            guard arguments.count == 1 else { throw .EINVAL }
            let domid = try parseDomid(arguments[0])
            guard exists(domid) else { throw .ENOENT }
            features = serverFeatures(for: domid)
        }
        return [request.reply(XenstorePayload.string(String(features.rawValue)))]
    }

    /// SET_FEATURE `domid|value|` → OK: the features `domid` will get when introduced. EINVAL
    /// for bits the server lacks; EBUSY once the domain is introduced (dom0 always is).
    mutating func setFeature(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let arguments = try XenstorePayload.arguments(request.message.payload, count: 2)
        let domid = try parseDomid(arguments[0])
        guard let raw = XenstorePayload.decimal(arguments[1], as: UInt32.self) else { throw .EINVAL }
        let features = XenstoreServerFeatures(rawValue: raw)
        guard supportedFeatures.isSuperset(of: features) else { throw .EINVAL }
        guard !exists(domid) else { throw .EBUSY }
        pendingFeatures[domid] = features
        return [request.ok]
    }

    /// GET_QUOTA `[[domid|]quota|]` → the decimal value; with no arguments, the quota names
    /// separated by spaces. Unknown names are EINVAL, unknown domains ENOENT.
    mutating func getQuota(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let arguments = try optionalArguments(request.message.payload)
        let source: Quotas
        switch arguments.count {
        case 0:
            return [request.reply(XenstorePayload.string(Quotas.wireNames.joined(separator: " ")))]
        case 1:
            source = quotas
        case 2:
            let domid = try parseDomid(arguments[0])
            guard exists(domid) else { throw .ENOENT }
            source = quotas(for: domid)
        default:
            throw .EINVAL
        }
        guard let value = source[wireName: String(decoding: arguments[arguments.count - 1], as: UTF8.self)] else {
            throw .EINVAL
        }
        return [request.reply(XenstorePayload.string(String(value)))]
    }

    /// SET_QUOTA `[domid|]quota|value|` → OK. Without a domid the global default changes
    /// (domains without their own setting follow it); 0 disables that check.
    mutating func setQuota(_ request: RequestContext) throws(XenstoreError) -> [XenstoreEffect] {
        let arguments = try XenstorePayload.arguments(request.message.payload)
        guard arguments.count == 2 || arguments.count == 3 else { throw .EINVAL }
        let name = String(decoding: arguments[arguments.count - 2], as: UTF8.self)
        guard quotas[wireName: name] != nil,
            let value = XenstorePayload.decimal(arguments[arguments.count - 1], as: UInt32.self)
        else { throw .EINVAL }
        if arguments.count == 2 {
            quotas[wireName: name] = Int(value)
        } else {
            let domid = try parseDomid(arguments[0])
            guard exists(domid) else { throw .ENOENT }
            domainQuotas[domid, default: quotas][wireName: name] = Int(value)
        }
        return [request.ok]
    }
}
