//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import Testing
import Toolstack

/// The error message for a spec, or nil when it parses.
private func specError(_ spec: String) -> String? {
    do {
        _ = try ChannelConfiguration.parse(spec: spec, index: 0)
        return nil
    } catch {
        return error.message
    }
}

@Suite("channel specs, exactly as xl parses them (§6.1)")
struct ChannelSpecTests {
    @Test func ptyChannel() throws {
        let result = try ChannelConfiguration.parse(spec: "name=org.example.agent.0,connection=pty", index: 0)
        #expect(result.channel == ChannelConfiguration(name: "org.example.agent.0", connection: .pty, devid: 1))
        #expect(result.warnings.isEmpty)
    }

    @Test func socketChannelWithBackendAndWhitespace() throws {
        let result = try ChannelConfiguration.parse(
            spec: " connection = socket ,\tname = org.x.1 , path = /run/x.sock , backend = driver-dom ",
            index: 2
        )
        #expect(
            result.channel
                == ChannelConfiguration(
                    name: "org.x.1",
                    connection: .socket(path: "/run/x.sock"),
                    backend: "driver-dom",
                    devid: 3
                )
        )
    }

    @Test func emptyItemsAreSkipped() throws {
        let result = try ChannelConfiguration.parse(spec: ",,name=a,,connection=pty,", index: 0)
        #expect(result.channel.name == "a")
        #expect(result.channel.connection == .pty)
    }

    @Test func lastDuplicateWins() throws {
        let result = try ChannelConfiguration.parse(
            spec: "name=first,connection=socket,path=/a,name=second,path=/b,connection=pty",
            index: 0
        )
        #expect(result.channel == ChannelConfiguration(name: "second", connection: .pty, devid: 1))
    }

    @Test func pathIsIgnoredWithPty() throws {
        let result = try ChannelConfiguration.parse(spec: "name=a,connection=pty,path=/tmp/x", index: 0)
        #expect(result.channel.connection == .pty)
        #expect(result.warnings.isEmpty)
    }

    @Test func unknownParameterIsAWarning() throws {
        let result = try ChannelConfiguration.parse(spec: "name=a,connection=pty,colour=blue,  size = 3", index: 0)
        #expect(
            result.warnings == [
                "unknown channel parameter 'colour', ignoring",
                "unknown channel parameter 'size', ignoring",
            ]
        )
        #expect(result.channel.name == "a")
    }

    @Test func missingNameIsNotAnXLError() throws {
        let result = try ChannelConfiguration.parse(spec: "connection=pty", index: 4)
        #expect(result.channel.name == nil)
        #expect(result.channel.devid == 5)
    }

    @Test func backendIsStoredAsGiven() throws {
        let result = try ChannelConfiguration.parse(spec: "name=a,connection=pty,backend=0", index: 0)
        #expect(result.channel.backend == "0")
    }

    /// xl since 4.18 (upstream 4bad14a133) splits at the first '=' only.
    @Test func aValueKeepsEveryEqualsSign() throws {
        let result = try ChannelConfiguration.parse(spec: "name=a,connection=socket,path=/run/a=b.sock", index: 0)
        #expect(result.channel.connection == .socket(path: "/run/a=b.sock"))
        #expect(result.warnings.isEmpty)
        #expect(try ChannelConfiguration.parse(spec: "name==a=,connection=pty", index: 0).channel.name == "=a=")
    }

    /// An item that starts with '=' has an empty key: an unknown parameter, as in xl 4.21.
    @Test func anEmptyKeyIsAnUnknownParameter() throws {
        let result = try ChannelConfiguration.parse(spec: "=pty,name=a,connection=pty", index: 0)
        #expect(result.warnings == ["unknown channel parameter '', ignoring"])
    }

    @Test func aNearMissSaysWhatItMeant() throws {
        let result = try ChannelConfiguration.parse(
            spec: "nmae=a,name=a,conection=pty,connection=pty,colour=blue",
            index: 0
        )
        #expect(
            result.warnings == [
                "unknown channel parameter 'nmae', ignoring (did you mean 'name'?)",
                "unknown channel parameter 'conection', ignoring (did you mean 'connection'?)",
                "unknown channel parameter 'colour', ignoring",
            ]
        )
    }

    @Test(arguments: [
        ("name", "failed to parse channel configuration: name"),
        ("name=a,connection", "failed to parse channel configuration: connection"),
        ("name=,connection=pty", "failed to parse channel configuration: name="),
        (" , connection=pty", "failed to parse channel configuration:  "),
        ("name=a,connection=PTY", "unknown channel connection 'PTY'"),
        ("name=a,connection=SOCKET,path=/x", "unknown channel connection 'SOCKET'"),
        ("name=a,connection=file", "unknown channel connection 'file'"),
        ("name=a", "channel has unknown 'connection'"),
        ("name=a,path=/x", "channel has unknown 'connection'"),
        ("name=a,connection=socket", "channel connection 'socket' requires path=.."),
        ("", "empty channel specification: write e.g. \"name=org.example.agent.0, connection=pty\""),
        (",,,", "empty channel specification: write e.g. \"name=org.example.agent.0, connection=pty\""),
    ])
    func errors(spec: String, message: String) {
        #expect(specError(spec) == message)
    }

    @Test func channelErrorsInAConfigCarryFileAndItemLine() throws {
        let text = config("channel = [\n  \"name=a,connection=pty\",\n  \"name=b,connection=tcp\",\n]\n")
        let error = try #require(configError(text, file: "vm.cfg"))
        #expect(error.description == "vm.cfg:5: unknown channel connection 'tcp'")
    }

    @Test func channelWarningsInAConfigCarryTheItemLine() throws {
        let result = try parsed(config("channel = [ 'name=a,connection=pty',\n 'name=b,connection=pty,x=1' ]"))
        #expect(result.warnings.map(\.description) == ["guest.cfg:4: warning: unknown channel parameter 'x', ignoring"])
    }

    @Test func channelMustBeAListOfStrings() throws {
        // A single string: xl warns and configures no channel; so does Conch.
        let single = try parsed(config("channel = 'name=a,connection=pty'"))
        #expect(single.configuration.channels.isEmpty)
        #expect(
            single.warnings.map(\.description) == [
                "guest.cfg:3: warning: parameter `channel' is a single value but should be a list; "
                    + "no channel is configured (write channel = [ \"name=…, connection=pty\" ])"
            ]
        )
        #expect(
            configError(config("channel = [ 'name=a,connection=pty', 5 ]"))?.message
                == "channel 2 must be a quoted string such as \"name=…, connection=pty\", not a number"
        )
        #expect(configError(config("channel = [ ['name=a'] ]"))?.message.hasSuffix("not a list") == true)
    }

    @Test func devidsFollowListOrder() throws {
        let result = try parsed(config("channel = [ 'name=a,connection=pty', 'name=b,connection=pty' ]"))
        #expect(result.configuration.channels.map(\.devid) == [1, 2])
        #expect(result.configuration.channels.map(\.name) == ["a", "b"])
    }
}
