import Foundation
import XCTest

import Vexil

/// Every conformance vector (conformance/vectors/*.json) through the public API: an offline
/// client bootstrapped with the file's ruleset, as conformance/run does, and each case
/// evaluated with `variationDetail` and, for valid contexts, with the typed call of its type.
final class ConformanceVectorTests: XCTestCase {
    static let vectorsDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("conformance/vectors")

    static let files = [
        "basics", "errors", "experiments", "malformed", "multikind", "operators_attributes",
        "operators_dates", "operators_in", "operators_numeric", "operators_semver", "operators_strings",
        "prerequisite_cycles", "prerequisites", "rollouts", "rules", "segments", "targets",
    ]

    func testEveryVectorFileIsCovered() throws {
        let present = try FileManager.default.contentsOfDirectory(atPath: Self.vectorsDirectory.path)
            .filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
        XCTAssertEqual(present, Self.files.sorted(), "a vector file has no test here")
    }

    func testBasics() throws { try run("basics") }
    func testErrors() throws { try run("errors") }
    func testExperiments() throws { try run("experiments") }
    func testMalformed() throws { try run("malformed") }
    func testMultikind() throws { try run("multikind") }
    func testOperatorsAttributes() throws { try run("operators_attributes") }
    func testOperatorsDates() throws { try run("operators_dates") }
    func testOperatorsIn() throws { try run("operators_in") }
    func testOperatorsNumeric() throws { try run("operators_numeric") }
    func testOperatorsSemver() throws { try run("operators_semver") }
    func testOperatorsStrings() throws { try run("operators_strings") }
    func testPrerequisiteCycles() throws { try run("prerequisite_cycles") }
    func testPrerequisites() throws { try run("prerequisites") }
    func testRollouts() throws { try run("rollouts") }
    func testRules() throws { try run("rules") }
    func testSegments() throws { try run("segments") }
    func testTargets() throws { try run("targets") }

    private func run(_ name: String) throws {
        let text = try String(contentsOf: Self.vectorsDirectory.appendingPathComponent("\(name).json"), encoding: .utf8)
        let vectors = try JSONValue(parsing: text)
        let cases = try XCTUnwrap(vectors["cases"]?.arrayValue)
        XCTAssertFalse(cases.isEmpty)
        let ruleset: JSONValue = ["flags": vectors["flags"] ?? [], "segments": vectors["segments"] ?? []]
        let bootstrap = FileManager.default.temporaryDirectory.appendingPathComponent("vexil-vectors-\(name)-\(UUID()).json")
        try ruleset.jsonText.write(to: bootstrap, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bootstrap) }

        var options = VexilOptions(sdkKey: "vxl-server-conformance")
        options.offline = true
        options.bootstrapFile = bootstrap.path
        options.eventsEnabled = false
        let client = try VexilClient(options: options)

        for testCase in cases {
            let caseName = "\(name): \(testCase["name"]?.stringValue ?? "?")"
            let flag = try XCTUnwrap(testCase["flag"]?.stringValue)
            let defaultValue = testCase["default"] ?? .null
            let type = testCase["type"]?.stringValue.flatMap(FlagValueType.init(rawValue:))
                ?? FlagValueType(of: defaultValue)
            let expect = try XCTUnwrap(testCase["expect"])
            let context = Context(jsonValue: testCase["context"] ?? .null)

            let detail = client.variationDetail(flag, context: context, default: defaultValue, as: type)
            XCTAssertEqual(detail.value, expect["value"] ?? .null, "\(caseName): value")
            XCTAssertEqual(
                detail.variationIndex.map { JSONValue.number(Double($0)) } ?? .null, expect["variation"] ?? .null,
                "\(caseName): variation")
            XCTAssertEqual(detail.reason.jsonValue, expect["reason"], "\(caseName): reason")
            XCTAssertEqual(.bool(detail.inExperiment), expect["in_experiment"] ?? false, "\(caseName): in_experiment")
            XCTAssertEqual(detail.source, .bootstrap, "\(caseName): source")

            // The typed calls answer the same value.
            let expected = expect["value"] ?? .null
            switch (type, defaultValue) {
            case (.bool, .bool(let d)):
                XCTAssertEqual(.bool(client.boolVariation(flag, context: context, default: d)), expected, "\(caseName): bool")
                XCTAssertEqual(client.boolVariationDetail(flag, context: context, default: d).reason, detail.reason, caseName)
            case (.string, .string(let d)):
                XCTAssertEqual(.string(client.stringVariation(flag, context: context, default: d)), expected, "\(caseName): string")
            case (.number, .number(let d)):
                XCTAssertEqual(.number(client.numberVariation(flag, context: context, default: d)), expected, "\(caseName): number")
            case (.json, _):
                XCTAssertEqual(client.jsonVariation(flag, context: context, default: defaultValue), expected, "\(caseName): json")
            default:
                break
            }
        }
        closeSynchronously(client)
    }
}

/// Closes a client from synchronous test code.
func closeSynchronously(_ client: VexilClient) {
    let done = XCTestExpectation(description: "closed")
    Task {
        await client.close()
        done.fulfill()
    }
    XCTWaiter().wait(for: [done], timeout: 30)
}
