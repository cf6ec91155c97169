//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import Toolstack
import XenABI

@Suite("DomainConfiguration")
struct DomainConfigurationTests {
    @Test func defaultsMatchXL() throws {
        let result = try parsed(config(""))
        let c = result.configuration
        #expect(c.name == "guest")
        #expect(c.uuid == nil)
        #expect(c.type == .pv)
        #expect(c.memory == 32)
        #expect(c.maxMemory == 32)
        #expect(c.vcpus == 1)
        #expect(c.maxVCPUs == 1)
        #expect(c.kernel == "/usr/bin/agent")
        #expect(c.arguments == [])
        #expect(c.onPoweroff == .destroy)
        #expect(c.onReboot == .restart)
        #expect(c.onCrash == .destroy)
        #expect(c.channels == [])
        #expect(c.frontend == .flagAware)
        #expect(result.warnings == [])
    }

    @Test func everyKey() throws {
        let text = config(
            """
            uuid = "6B1F8A36-0C1D-4E2F-9A3B-4C5D6E7F8091"
            type = "pvh"
            memory = 0x100
            maxmem = "512"
            vcpus = 2
            maxvcpus = 4
            cmdline = "--port 80 --greeting 'hello world'"
            on_poweroff = "preserve"
            on_reboot = "rename-restart"
            on_crash = "coredump-restart"
            conch_frontend = "legacy"
            """
        )
        let c = try parsed(text).configuration
        #expect(c.uuid == "6b1f8a36-0c1d-4e2f-9a3b-4c5d6e7f8091")
        #expect(c.type == .pvh)
        #expect(c.memory == 256)
        #expect(c.maxMemory == 512)
        #expect(c.vcpus == 2)
        #expect(c.maxVCPUs == 4)
        #expect(c.arguments == ["--port", "80", "--greeting", "hello world"])
        #expect(c.onPoweroff == .preserve)
        #expect(c.onReboot == .renameRestart)
        #expect(c.onCrash == .coredumpRestart)
        #expect(c.frontend == .legacy)
    }

    @Test(arguments: ShutdownAction.allCases)
    func everyShutdownActionIsAccepted(action: ShutdownAction) throws {
        let c = try parsed(config("on_crash = '\(action.rawValue)'")).configuration
        #expect(c.onCrash == action)
    }

    @Test func unknownActionIsRejected() throws {
        let error = try #require(configError(config("on_reboot = 'reboot'")))
        #expect(error.line == 3)
        #expect(error.message.hasPrefix("Unknown on_reboot action \"reboot\" specified (use one of destroy, restart"))
    }

    @Test func argumentsFromRootAndExtraLikeXL() throws {
        #expect(try parsed(config("extra = 'a b'")).configuration.arguments == ["a", "b"])
        #expect(try parsed(config("root = '/dev/xvda'")).configuration.arguments == ["root=/dev/xvda"])
        #expect(
            try parsed(config("root = '/dev/x'\nextra = 'quiet'")).configuration.arguments
                == ["root=/dev/x", "quiet"]
        )
        let both = try parsed(config("cmdline = 'c'\nextra = 'e'"))
        #expect(both.configuration.arguments == ["c"])
        #expect(both.warnings.map(\.message) == ["ignoring root= and extra= in favour of cmdline="])
    }

    @Test func unterminatedQuoteInCmdline() throws {
        let error = try #require(configError(config("cmdline = \"--name 'x\"")))
        #expect(
            error.description
                == "guest.cfg:3: cannot split cmdline into arguments: "
                + "unterminated single quote (opened at character 8): add the closing '"
        )
    }

    @Test func unknownKeysWarnOnceEach() throws {
        let result = try parsed(config("vif = [ 'bridge=xenbr0' ]\ndisk = []\nvif = []\n"))
        #expect(
            result.warnings.map(\.description) == [
                "guest.cfg:3: warning: ignoring unknown or unsupported parameter 'vif'",
                "guest.cfg:4: warning: ignoring unknown or unsupported parameter 'disk'",
                "guest.cfg:5: warning: 'vif' is set again (first on line 3); the last setting wins",
            ]
        )
    }

    /// A misspelt key says so, with the key it was probably meant to be, even
    /// when the file then fails because the real key is missing.
    @Test func warningsComeWithTheErrorAndSayWhatWasMeant() throws {
        let error = try #require(
            configError("name = \"a\"\nkernal = \"/bin/sh\"\nchannel = [ 'nmae=x,connection=pty' ]\n")
        )
        #expect(error.message.hasPrefix("no kernel specified"))
        #expect(
            error.warnings.map(\.description) == [
                "guest.cfg:2: warning: ignoring unknown or unsupported parameter 'kernal' (did you mean 'kernel'?)",
                "guest.cfg:3: warning: unknown channel parameter 'nmae', ignoring (did you mean 'name'?)",
            ]
        )
        let report = DryRunReport.make(text: "name = \"a\"\nkernal = \"/bin/sh\"\n", fileName: "a.cfg")
        #expect(report.error?.contains("no kernel specified") == true)
        #expect(
            report.warnings == [
                "a.cfg:2: warning: ignoring unknown or unsupported parameter 'kernal' (did you mean 'kernel'?)"
            ]
        )
    }

    @Test func nearMissesAreCloseAndUnambiguous() {
        #expect(NearMiss.closest(to: "kernal", among: DomainConfiguration.knownKeys) == "kernel")
        #expect(NearMiss.closest(to: "on_powerof", among: DomainConfiguration.knownKeys) == "on_poweroff")
        #expect(NearMiss.closest(to: "Memory", among: DomainConfiguration.knownKeys) == "memory")
        #expect(NearMiss.closest(to: "bootloader", among: DomainConfiguration.knownKeys) == nil)
        #expect(NearMiss.closest(to: "ab", among: ["ac", "ad"]) == nil, "a tie suggests nothing")
        #expect(NearMiss.closest(to: "nmae", among: ["name"]) == "name", "a swap is one edit")
    }

    @Test func duplicateKnownKeyLastWinsWithWarning() throws {
        let result = try parsed(config("memory = 64\nmemory = 128"))
        #expect(result.configuration.memory == 128)
        #expect(result.warnings.map(\.message) == ["'memory' is set again (first on line 3); the last setting wins"])
    }

    @Test func numbersAsStringsAndStringsAsNumbers() throws {
        let c = try parsed("name = 42\nkernel = './run'\nmemory = '0x40'").configuration
        #expect(c.name == "42")
        #expect(c.kernel == "./run")
        #expect(c.memory == 64)
    }

    @Test func builderIsDeprecatedButHonoured() throws {
        let result = try parsed(config("builder = 'hvm'"))
        #expect(result.configuration.type == .hvm)
        #expect(
            result.warnings.map(\.message)
                == ["The \"builder\" option is being deprecated, please use \"type\" instead."]
        )
    }

    @Test(arguments: [
        ("", "guest.cfg: Domain name must be specified."),
        ("name = ''", "guest.cfg:1: Domain name must be specified."),
        (
            "name = 'x'",
            "guest.cfg: no kernel specified: Conch runs a host program as the guest's kernel, add e.g. "
                + "kernel = \"/usr/bin/my-agent\""
        ),
        (
            "name = 'x'\nkernel = ''",
            "guest.cfg:2: kernel must be a path to a host program, e.g. kernel = \"/usr/bin/my-agent\""
        ),
        ("name = ['x']", "guest.cfg:1: parameter 'name' is a list but should be a single value, e.g. name = \"…\""),
        (config("uuid = 'nope'"), "guest.cfg:3: Failed to parse UUID: nope (write 8-4-4-4-12 hex digits)"),
        (config("type = 'PV'"), "guest.cfg:3: Invalid domain type PV. (use \"pv\", \"pvh\" or \"hvm\")"),
        (config("memory = 'lots'"), "guest.cfg:3: parameter 'memory' is not a valid number: 'lots'"),
        (
            config("memory = 0"),
            "guest.cfg:3: parameter 'memory' is out of range: 0 (it must be between 1 and 1048576 MiB)"
        ),
        (
            config("memory = 99999999999999999999"),
            "guest.cfg:3: parameter 'memory' is not a valid number: '99999999999999999999'"
        ),
        (
            config("memory = 64\nmaxmem = 32"),
            "guest.cfg:4: maxmem (32 MiB) must be greater than or equal to memory (64 MiB)"
        ),
        (config("vcpus = 4\nmaxvcpus = 2"), "guest.cfg:4: maxvcpus (2) must be greater than or equal to vcpus (4)"),
        (
            config("vcpus = [1]"),
            "guest.cfg:3: parameter 'vcpus' is a list but should be a single number, e.g. vcpus = 1"
        ),
        (
            config("conch_frontend = 'old'"),
            "guest.cfg:3: unknown conch_frontend 'old': use \"new\" (the default: the seed's frontend), "
                + "\"linux71\" (drop writes while disconnected) or \"legacy\" (ignore the connection flag)"
        ),
    ])
    func errors(text: String, expected: String) {
        #expect(configError(text)?.description == expected)
    }

    // MARK: - Validation (libxl's messages, §5.4)

    @Test func validationMessagesAreLibxls() {
        func message(_ channel: ChannelConfiguration) -> String? {
            let c = DomainConfiguration(name: "g", kernel: "/bin/true", channels: [channel])
            do {
                try c.validate()
                return nil
            } catch {
                return error.message
            }
        }
        #expect(message(ChannelConfiguration(name: nil, connection: .pty, devid: 1)) == "channel 1 has no name")
        #expect(
            message(ChannelConfiguration(name: "a", connection: nil, devid: 2))
                == "channel 2 has no defined connection; to where should it be connected?"
        )
        #expect(
            message(ChannelConfiguration(name: "a", connection: .socket(path: ""), devid: 3))
                == "channel 3 has no path"
        )
        #expect(
            message(ChannelConfiguration(name: "a", connection: .pty, devid: 0))?.hasPrefix("channel devid 0") == true
        )
        #expect(message(ChannelConfiguration(name: "a", connection: .socket(path: "/s"), devid: 1)) == nil)
    }

    @Test func validationChecksEveryChannelBeforeAnything() throws {
        let c = try parsed(config("channel = [ 'name=a,connection=pty', 'connection=pty' ]")).configuration
        #expect(throws: DomainValidationError("channel 2 has no name")) { try c.validate() }
    }

    @Test func kernelMustBeExecutable() throws {
        let c = DomainConfiguration(name: "g", kernel: "/boot/vmlinuz")
        #expect(
            throws: DomainValidationError(
                "kernel '/boot/vmlinuz' is not an executable program: Conch runs a host program as the guest's kernel "
                    + "(e.g. kernel = \"/usr/bin/my-agent\")"
            )
        ) {
            try c.checkKernel { _ in false }
        }
        var asked: [String] = []
        try c.validate { path in
            asked.append(path)
            return true
        }
        #expect(asked == ["/boot/vmlinuz"])
    }
}

@Suite("domain names")
struct DomainNameTests {
    @Test(arguments: ["../etc", "a/b", ".", "..", "tab\there", "42"])
    func unusableNamesAreRefused(name: String) throws {
        var configuration = try DomainConfiguration.parse("name = \"x\"\nkernel = \"/bin/true\"\n", fileName: "t.cfg")
            .configuration
        configuration.name = name
        #expect(throws: DomainValidationError.self) { try configuration.validate() }
    }

    @Test func ordinaryNamesAreAccepted() throws {
        var configuration = try DomainConfiguration.parse("name = \"x\"\nkernel = \"/bin/true\"\n", fileName: "t.cfg")
            .configuration
        for name in ["web-1", "db.example.org", "guest_7", "1st"] {
            configuration.name = name
            try configuration.validate()
        }
    }
}
