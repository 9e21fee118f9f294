import Foundation
import XCTest

import Vexil

/// The client against a real vexil-server (see TestServer).
final class ServerTests: XCTestCase {
    static let checkout: [String: Any] = [
        "key": "checkout", "kind": "bool", "variations": [false, true], "on": true,
        "off_variation": 0, "fallthrough": ["variation": 1],
    ]
    let alice = Context.user("alice").build()
    var server: TestServer!

    override func setUpWithError() throws {
        server = try TestServer()
    }

    override func tearDown() {
        server?.stop()
        server = nil
    }

    private func localClient(flushInterval: TimeInterval? = nil) throws -> VexilClient {
        var options = VexilOptions(sdkKey: server.serverKey)
        options.endpoint = server.endpoint
        options.initialBackoff = 0.1
        options.maxBackoff = 0.5
        options.flushInterval = flushInterval
        return try VexilClient(options: options)
    }

    func testInitialSync() async throws {
        try server.importFlags([Self.checkout])
        let client = try localClient()
        let status = try await client.waitForInitialization(timeout: 10)
        XCTAssertEqual(status, .ready)
        XCTAssertTrue(client.boolVariation("checkout", context: alice, default: false))
        let detail = client.boolVariationDetail("checkout", context: alice, default: false)
        XCTAssertEqual(detail.value, true)
        XCTAssertEqual(detail.reason, .fallthrough)
        XCTAssertEqual(detail.variationIndex, 1)
        XCTAssertEqual(detail.source, .network)
        XCTAssertGreaterThan(detail.environmentVersion, 0)
        let all = try client.allFlags(context: alice)
        XCTAssertEqual(all["checkout"]?.value, .bool(true))
        await client.close()
        XCTAssertEqual(client.status, .closed)
    }

    func testARefusedKeyIsLoggedOnceAsAnError() async throws {
        let logged = LoggedMessages()
        var options = VexilOptions(sdkKey: "vxl-server-not-a-real-key")
        options.endpoint = server.endpoint
        options.logger = { level, message in logged.append(level, message) }
        let client = try VexilClient(options: options)
        let status = try await client.waitForInitialization(timeout: 10)
        guard case .failed = status else { return XCTFail("status \(status)") }
        await client.close()
        let messages = logged.all
        let refused = messages.filter { $0.1.contains("refused the SDK key") }
        XCTAssertEqual(refused.count, 1, "\(messages)")
        XCTAssertEqual(refused.first?.0, .error)
        XCTAssertTrue(messages.allSatisfy { $0.0 <= .info }, "info by default: \(messages)")
    }

    func testChangeReachesTheAsyncStream() async throws {
        try server.importFlags([Self.checkout])
        let client = try localClient()
        let initialized = try await client.waitForInitialization(timeout: 10)
        XCTAssertEqual(initialized, .ready)
        let changes = client.changes()
        let seen = Task { () -> FlagChange? in
            for await change in changes where change.flagKeys.contains("checkout") {
                return change
            }
            return nil
        }
        let before = client.version
        try server.cli("flags", "toggle", "checkout", "off")
        let timer = Task {
            try await Task.sleep(nanoseconds: 10_000_000_000)
            seen.cancel()  // ends the iteration: `seen` answers nil
        }
        let change = await seen.value
        timer.cancel()
        let received = try XCTUnwrap(change, "no change reached the stream")
        XCTAssertGreaterThan(received.version, before)
        XCTAssertFalse(client.boolVariation("checkout", context: alice, default: true))
        XCTAssertEqual(client.boolVariationDetail("checkout", context: alice, default: true).reason, .off)
        // Closing ends the streams.
        let ending = client.changes()
        await client.close()
        var afterClose = 0
        for await _ in ending { afterClose += 1 }
        XCTAssertEqual(afterClose, 0)
    }

    func testRemoteEvaluationWithMobileKeyAndIdentify() async throws {
        var flag = Self.checkout
        flag["client_side"] = true
        flag["rules"] = [
            ["id": "bob", "clauses": [["attribute": "key", "op": "in", "values": ["bob"]]], "serve": ["variation": 0]]
        ]
        var serverOnly = Self.checkout
        serverOnly["key"] = "server-only"
        try server.importFlags([flag, serverOnly])

        var options = VexilOptions(sdkKey: server.mobileKey)
        options.endpoint = server.endpoint
        options.context = alice
        let client = try VexilClient(options: options)
        let initialized = try await client.waitForInitialization(timeout: 10)
        XCTAssertEqual(initialized, .ready)
        XCTAssertTrue(client.boolVariation("checkout", context: alice, default: false))
        XCTAssertEqual(
            client.boolVariationDetail("server-only", context: alice, default: false).reason,
            .error(.flagNotFound), "a server-only flag is invisible to a mobile key")

        let bob = Context.user("bob").build()
        let arrived = try await client.identify(bob, timeout: 10)
        XCTAssertTrue(arrived)
        let detail = client.boolVariationDetail("checkout", context: bob, default: true)
        XCTAssertEqual(detail.value, false)
        XCTAssertEqual(detail.reason, .ruleMatch(index: 0, id: "bob"))
        XCTAssertEqual(detail.source, .network)
        await client.close()
    }

    func testTrackAndFlushAreCountedByTheServer() async throws {
        try server.importFlags([Self.checkout])
        let client = try localClient(flushInterval: 3600)
        let initialized = try await client.waitForInitialization(timeout: 10)
        XCTAssertEqual(initialized, .ready)
        let bob = Context.user("bob").with("plan", "pro").build()
        try client.track("purchase", context: alice, value: 10)
        try client.track("purchase", context: bob, value: 20.5)
        try client.track("signup", context: bob)
        XCTAssertEqual(client.eventStats.queued, 3)
        let delivered = try await client.flush(timeout: 10)
        XCTAssertTrue(delivered)
        XCTAssertEqual(client.eventStats.sent, 3)
        XCTAssertEqual(client.eventStats.queued, 0)
        let counted = try server.metric("vexil_events_total{environment=\"default/production\",type=\"track\"}")
        XCTAssertEqual(counted, 3)
        await client.close()
    }

    func testRefusedKeyFailsInitialization() async throws {
        var options = VexilOptions(sdkKey: "vxl-server-not-a-real-key")
        options.endpoint = server.endpoint
        let client = try VexilClient(options: options)
        let status = try await client.waitForInitialization(timeout: 10)
        guard case .failed = status else { return XCTFail("expected failed, got \(status)") }
        await client.close()
    }
}

/// What a logger received, from any thread.
final class LoggedMessages: @unchecked Sendable {
    // @unchecked: `messages` is guarded by `lock`.
    private let lock = NSLock()
    private var messages: [(LogLevel, String)] = []

    func append(_ level: LogLevel, _ message: String) {
        lock.lock()
        defer { lock.unlock() }
        messages.append((level, message))
    }

    var all: [(LogLevel, String)] {
        lock.lock()
        defer { lock.unlock() }
        return messages
    }
}
