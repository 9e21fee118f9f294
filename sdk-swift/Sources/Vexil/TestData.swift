import Foundation
import VexilNative

/// Flags and segments held in memory, standing in for the server in an application's tests:
/// set `VexilOptions.testData`, then change flags one at a time. Each change reaches every
/// client at once (and their `changes()` streams); a flag that would not compile throws
/// `VexilError.invalidOptions` naming the field, and nothing changes.
public final class TestData: @unchecked Sendable {
    // @unchecked: the native object is thread-safe (a Rust `Sync` object behind an `Arc`).
    let native: NativeTestData

    public init() {
        native = NativeTestData()
    }

    /// Adds or replaces a flag given as JSON in the export format (key, kind, variations, on,
    /// rules, fallthrough, …).
    public func updateFlag(json: String) throws {
        try vexilNative { try native.updateFlag(flagJson: json) }
    }

    /// Makes flag `key` serve `value` to every context (a flag of the value's type).
    public func setValue(_ key: String, _ value: JSONValue) throws {
        try vexilNative { try native.setValue(key: key, valueJson: value.jsonText) }
    }

    /// Adds or replaces a segment given as JSON in the export format.
    public func updateSegment(json: String) throws {
        try vexilNative { try native.updateSegment(segmentJson: json) }
    }

    /// Removes flag `key`; whether it was there.
    @discardableResult
    public func removeFlag(_ key: String) -> Bool { native.removeFlag(key: key) }

    /// Removes segment `key`; whether it was there.
    @discardableResult
    public func removeSegment(_ key: String) -> Bool { native.removeSegment(key: key) }
}
