import Foundation
import XCTest

@_spi(Testing) import Vexil

/// Options, contexts and errors, with offline clients.
final class ClientTests: XCTestCase {
    static func bootstrapFile(_ ruleset: JSONValue) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vexil-client-\(UUID()).json")
        try ruleset.jsonText.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    static let ruleset: JSONValue = [
        "flags": [
            [
                "key": "pro-feature", "kind": "bool", "variations": [false, true], "on": true,
                "rules": [
                    [
                        "id": "pro", "serve": ["variation": 1],
                        "clauses": [
                            ["context_kind": "organization", "attribute": "plan", "op": "in", "values": ["pro"]]
                        ],
                    ]
                ],
                "fallthrough": ["variation": 0],
            ],
            ["key": "banner", "kind": "string", "variations": ["hello", "bye"], "on": true, "fallthrough": ["variation": 0]],
            ["key": "limit", "kind": "number", "variations": [10, 20.5], "on": true, "fallthrough": ["variation": 1]],
            ["key": "theme", "kind": "json", "variations": [["dark": true]], "on": true, "fallthrough": ["variation": 0]],
        ],
        "segments": [],
    ]

    func offlineClient() throws -> VexilClient {
        var options = VexilOptions(sdkKey: "vxl-server-offline")
        options.offline = true
        options.bootstrapFile = try Self.bootstrapFile(Self.ruleset)
        return try VexilClient(options: options)
    }

    func testTestDataChangesReachTheClientAtOnce() async throws {
        let data = TestData()
        try data.setValue("checkout", .bool(true))
        var options = VexilOptions(sdkKey: "vxl-server-test")
        options.testData = data
        let client = try VexilClient(options: options)
        let alice = Context.user("alice").build()
        let bob = Context.user("bob").build()
        XCTAssertEqual(client.status, .ready)
        XCTAssertTrue(client.boolVariation("checkout", context: alice, default: false))
        let changes = client.changes()
        let seen = Task { () -> FlagChange? in
            for await change in changes { return change }
            return nil
        }
        try data.setValue("checkout", .bool(false))
        XCTAssertFalse(client.boolVariation("checkout", context: alice, default: true), "seen at once")
        let change = await seen.value
        XCTAssertEqual(change?.flagKeys, ["checkout"])

        try data.updateFlag(json: """
            {"key": "banner", "kind": "string", "variations": ["plain", "gold"], "on": true,
             "rules": [{"id": "bob", "clauses": [{"attribute": "key", "op": "in", "values": ["bob"]}],
                        "serve": {"variation": 1}}],
             "fallthrough": {"variation": 0}}
            """)
        XCTAssertEqual(client.stringVariation("banner", context: bob, default: "?"), "gold")
        XCTAssertEqual(client.stringVariation("banner", context: alice, default: "?"), "plain")
        XCTAssertThrowsError(try data.updateFlag(json: """
            {"key": "banner", "kind": "string", "variations": ["x"], "on": true, "fallthrough": {"variation": 4}}
            """)) { error in
            XCTAssertTrue("\(error)".contains("fallthrough"), "\(error)")
        }
        XCTAssertEqual(client.stringVariation("banner", context: bob, default: "?"), "gold", "nothing changed")
        XCTAssertTrue(data.removeFlag("banner"))
        XCTAssertFalse(data.removeFlag("banner"))
        XCTAssertEqual(client.stringVariation("banner", context: bob, default: "?"), "?")
        await client.close()
    }

    func testTypedVariationsAndDetails() async throws {
        let client = try offlineClient()
        let alice = Context.user("alice").build()
        let initialized = try await client.waitForInitialization(timeout: 1)
        XCTAssertEqual(initialized, .offline)
        XCTAssertEqual(client.stringVariation("banner", context: alice, default: "x"), "hello")
        XCTAssertEqual(client.numberVariation("limit", context: alice, default: 0), 20.5)
        XCTAssertEqual(client.jsonVariation("theme", context: alice, default: nil), ["dark": true])
        let detail = client.numberVariationDetail("limit", context: alice, default: 0)
        XCTAssertEqual(detail.value, 20.5)
        XCTAssertEqual(detail.variationIndex, 1)
        XCTAssertEqual(detail.reason, .fallthrough)
        XCTAssertEqual(detail.source, .bootstrap)
        let wrongType = client.stringVariationDetail("limit", context: alice, default: "d")
        XCTAssertEqual(wrongType.value, "d")
        XCTAssertEqual(wrongType.reason, .error(.wrongType))
        let missing = client.boolVariationDetail("nope", context: alice, default: true)
        XCTAssertEqual(missing.value, true)
        XCTAssertEqual(missing.reason, .error(.flagNotFound))
        let all = try client.allFlags(context: alice)
        XCTAssertEqual(Set(all.keys), ["pro-feature", "banner", "limit", "theme"])
        XCTAssertEqual(all["banner"]?.value, .string("hello"))
        await client.close()
    }

    func testMultiKindContextBuiltOnceAndReused() throws {
        let client = try offlineClient()
        let pro = Context.multi(
            Context.user("alice").with("email", "alice@example.com"),
            Context.builder(kind: "organization", key: "acme").with("plan", "pro"))
        XCTAssertTrue(pro.isValid, pro.validationError ?? "")
        let free = Context.multi(Context.user("bob"), Context.builder(kind: "organization", key: "other"))
        for _ in 0..<3 {
            XCTAssertTrue(client.boolVariation("pro-feature", context: pro, default: false))
            XCTAssertFalse(client.boolVariation("pro-feature", context: free, default: true))
        }
        XCTAssertEqual(
            client.boolVariationDetail("pro-feature", context: pro, default: false).reason, .ruleMatch(index: 0, id: "pro"))
        // The builder and the JSON form are the same context.
        let fromJSON = Context(
            json: #"{"kind":"multi","contexts":[{"kind":"user","key":"alice"},{"kind":"organization","key":"acme","attributes":{"plan":"pro"}}]}"#)
        XCTAssertTrue(client.boolVariation("pro-feature", context: fromJSON, default: false))
        closeSynchronously(client)
    }

    func testInvalidContextAnswersTheDefaultAndRefusesEvents() async throws {
        let client = try offlineClient()
        let invalid = Context.user("").build()
        XCTAssertFalse(invalid.isValid)
        XCTAssertTrue(invalid.validationError?.contains("key") ?? false, invalid.validationError ?? "")
        XCTAssertEqual(client.stringVariation("banner", context: invalid, default: "d"), "d")
        let detail = client.stringVariationDetail("banner", context: invalid, default: "d")
        XCTAssertEqual(detail.reason, .error(.invalidContext))
        XCTAssertThrowsError(try client.track("purchase", context: invalid)) { error in
            guard case VexilError.invalidContext(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.hasPrefix("context"), message)
        }
        XCTAssertThrowsError(try client.allFlags(context: invalid))
        do {
            _ = try await client.identify(invalid)
            XCTFail("identify accepted an invalid context")
        } catch VexilError.invalidContext {
        }
        let notJSON = Context(json: "{")
        XCTAssertEqual(notJSON.validationError?.contains("not JSON"), true)
        XCTAssertEqual(client.boolVariationDetail("pro-feature", context: notJSON, default: true).reason, .error(.invalidContext))
        await client.close()
    }

    func testBadOptionsNameTheField() {
        XCTAssertThrowsError(try VexilClient(options: VexilOptions(sdkKey: "not-a-key"))) { error in
            guard case VexilError.invalidOptions(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.hasPrefix("options"), message)
            XCTAssertFalse(message.contains("not-a-key"), "the key must not be echoed")
        }
        var options = VexilOptions(sdkKey: "vxl-server-x")
        options.flushInterval = -1
        XCTAssertThrowsError(try VexilClient(options: options)) { error in
            XCTAssertEqual(error as? VexilError, .invalidOptions("options.flushInterval: must be a non-negative number of seconds"))
        }
        options = VexilOptions(sdkKey: "vxl-mobile-x")
        options.context = Context.user("").build()
        XCTAssertThrowsError(try VexilClient(options: options)) { error in
            guard case VexilError.invalidOptions(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.hasPrefix("options.context"), message)
        }
        options = VexilOptions(sdkKey: "vxl-server-x")
        options.endpoint = "not a url"
        XCTAssertThrowsError(try VexilClient(options: options)) { error in
            guard case VexilError.invalidOptions(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("endpoint"), message)
        }
    }

    func testANativePanicIsAnErrorNotACrash() throws {
        XCTAssertThrowsError(try _vexilTriggerNativePanic("boom")) { error in
            guard case VexilError.internalError(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("boom"), message)
        }
        // The library keeps working after it.
        let client = try offlineClient()
        XCTAssertEqual(client.stringVariation("banner", context: Context.user("a").build(), default: "x"), "hello")
        closeSynchronously(client)
    }

    func testBeforeAnyDataTheDefaultIsServed() async throws {
        var options = VexilOptions(sdkKey: "vxl-server-unreachable")
        options.endpoint = "http://127.0.0.1:9"
        options.connectTimeout = 0.2
        let client = try VexilClient(options: options)
        let detail = client.boolVariationDetail("anything", context: Context.user("a").build(), default: true)
        XCTAssertEqual(detail.value, true)
        XCTAssertEqual(detail.reason, .error(.clientNotReady))
        XCTAssertEqual(detail.source, .defaults)
        // The wait ends at the timeout, without data.
        let started = Date()
        let status = try await client.waitForInitialization(timeout: 0.3)
        XCTAssertNotEqual(status, .ready)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        await client.close()
    }

    func testWaitForInitializationHonoursCancellation() async throws {
        var options = VexilOptions(sdkKey: "vxl-server-unreachable")
        options.endpoint = "http://127.0.0.1:9"
        let client = try VexilClient(options: options)
        let waiting = Task { try await client.waitForInitialization(timeout: 60) }
        waiting.cancel()
        do {
            _ = try await waiting.value
            XCTFail("not cancelled")
        } catch is CancellationError {
        }
        await client.close()
    }
}
