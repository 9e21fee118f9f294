import Dispatch
import Foundation
import XCTest

@_spi(Benchmark) import Vexil

/// `boolVariation` with a reused context, measured with XCTest `measure`, and compared with the
/// same call made inside the native library in the same run. Figures are printed (see
/// README.md), never asserted: machine load decides them.
final class BenchmarkTests: XCTestCase {
    #if DEBUG
        static let iterations = 20_000  // unoptimized builds: a short smoke run
    #else
        static let iterations = 200_000
    #endif

    func testBoolVariationWithAReusedContext() throws {
        var options = VexilOptions(sdkKey: "vxl-server-bench")
        options.offline = true
        options.eventsEnabled = false
        options.bootstrapFile = try ClientTests.bootstrapFile(ClientTests.ruleset)
        let client = try VexilClient(options: options)
        let context = Context.multi(
            Context.user("alice").with("email", "alice@example.com"),
            Context.builder(kind: "organization", key: "acme").with("plan", "pro"))
        XCTAssertTrue(client.boolVariation("pro-feature", context: context, default: false))

        let n = Self.iterations
        measure {
            var served = 0
            for _ in 0..<n where client.boolVariation("pro-feature", context: context, default: false) {
                served += 1
            }
            XCTAssertEqual(served, n)
        }

        // The same loop timed by hand, next to the native loop, for the ratio (best of 5).
        var swiftBest = UInt64.max
        var rustBest = UInt64.max
        for _ in 0..<5 {
            let started = DispatchTime.now().uptimeNanoseconds
            var served = 0
            for _ in 0..<n where client.boolVariation("pro-feature", context: context, default: false) {
                served += 1
            }
            swiftBest = min(swiftBest, DispatchTime.now().uptimeNanoseconds - started)
            XCTAssertEqual(served, n)
            rustBest = min(
                rustBest,
                try client._nativeBoolVariationNanoseconds("pro-feature", context: context, iterations: UInt64(n)))
        }
        let swiftPerCall = Double(swiftBest) / Double(n)
        let rustPerCall = Double(rustBest) / Double(n)
        print(
            String(
                format: "benchmark: boolVariation (reused multi-kind context, rule match) Swift %.1f ns/call, Rust %.1f ns/call, ratio %.2f",
                swiftPerCall, rustPerCall, swiftPerCall / rustPerCall))
        closeSynchronously(client)
    }
}
