import Foundation
import VexilNative

/// How a client is set up. Only `sdkKey` is required; every other field has a default fit for
/// production.
public struct VexilOptions: Sendable {
    /// The SDK key. Its kind decides the mode: `vxl-server-…` syncs the ruleset and evaluates
    /// locally; `vxl-mobile-…` and `vxl-client-…` receive values evaluated by the server for the
    /// identified context.
    public var sdkKey: String
    /// The server's gRPC endpoint (`https://flags.example.com:443`); default
    /// `http://127.0.0.1:50051`.
    public var endpoint: String?
    /// Where the last good data is kept and read at the next start (for instance the app's
    /// caches directory); `nil`: not persisted.
    public var cacheDirectory: String?
    /// A ruleset JSON file (the export format) used until better data arrives.
    public var bootstrapFile: String?
    /// No network at all: cache, bootstrap or defaults.
    public var offline: Bool = false
    /// Remote mode: the first context whose values are watched.
    public var context: Context?
    /// Send exposures, `track` events and evaluation summaries.
    public var eventsEnabled: Bool = true
    /// How often pending events are sent (seconds); default 5.
    public var flushInterval: TimeInterval?
    /// Events held at most while waiting to be sent; default 10,000.
    public var eventCapacity: Int?
    /// Attributes that events never carry, on every context (private attributes): names, or
    /// JSON Pointers into the attributes (`/address/street`). Their values are removed before
    /// an event is queued and their names listed in the context's `redacted_attributes`;
    /// evaluation still reads them.
    public var privateAttributes: [String] = []
    /// Every attribute private: events carry kinds and keys only.
    public var allAttributesPrivate: Bool = false
    /// Timeout of a connection attempt (seconds); default 5.
    public var connectTimeout: TimeInterval?
    /// A stream silent for this long is reconnected (seconds); default 60.
    public var streamTimeout: TimeInterval?
    /// Reconnection backoff: first delay and maximum (seconds); defaults 1 and 30.
    public var initialBackoff: TimeInterval?
    public var maxBackoff: TimeInterval?
    /// Cached data older than this is reported stale (seconds); default 7 days.
    public var maxCacheAge: TimeInterval?
    /// Where the client's messages go: a refused SDK key is an `.error`, a dropped event batch
    /// or an unreadable cache file a `.warn`, status changes `.debug`. Called on the client's
    /// threads, one message at a time: return quickly. Default: `LogLevel.standardError`,
    /// which writes `vexil: level: message` lines to standard error; `nil`: nowhere.
    public var logger: (@Sendable (LogLevel, String) -> Void)? = LogLevel.standardError
    /// The most detailed messages passed to `logger`; default `.info`.
    public var logLevel: LogLevel = .info
    /// Tests: serve this in-memory data instead of the server's. The client evaluates locally
    /// whatever the key's kind, is ready at once, uses no network and writes no cache.
    public var testData: TestData?

    public init(sdkKey: String) {
        self.sdkKey = sdkKey
    }

    func native() throws -> NativeOptions {
        func millis(_ seconds: TimeInterval?, _ field: String) throws -> UInt64? {
            guard let seconds else { return nil }
            guard seconds.isFinite, seconds >= 0 else {
                throw VexilError.invalidOptions("options.\(field): must be a non-negative number of seconds")
            }
            return UInt64((seconds * 1000).rounded())
        }
        if let context, let problem = context.validationError {
            throw VexilError.invalidOptions("options.context: \(problem)")
        }
        if let eventCapacity, eventCapacity < 1 {
            throw VexilError.invalidOptions("options.eventCapacity: must be at least 1")
        }
        return NativeOptions(
            sdkKey: sdkKey, endpoint: endpoint, cacheDir: cacheDirectory,
            bootstrapFile: bootstrapFile, offline: offline, context: context?.native,
            eventsEnabled: eventsEnabled,
            flushIntervalMs: try millis(flushInterval, "flushInterval"),
            eventCapacity: eventCapacity.map { UInt64($0) },
            privateAttributes: privateAttributes,
            allAttributesPrivate: allAttributesPrivate,
            connectTimeoutMs: try millis(connectTimeout, "connectTimeout"),
            streamTimeoutMs: try millis(streamTimeout, "streamTimeout"),
            initialBackoffMs: try millis(initialBackoff, "initialBackoff"),
            maxBackoffMs: try millis(maxBackoff, "maxBackoff"),
            maxCacheAgeMs: try millis(maxCacheAge, "maxCacheAge"),
            sdkName: "vexil-swift", sdkVersion: vexilSwiftVersion)
    }
}

/// The level of a client's log message, most severe first. An identical message is logged at
/// most once a minute; the next one after that says how many were left out.
public enum LogLevel: Int, Sendable, Comparable, CustomStringConvertible {
    case error = 1, warn, info, debug, trace

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .error: return "error"
        case .warn: return "warn"
        case .info: return "info"
        case .debug: return "debug"
        case .trace: return "trace"
        }
    }

    /// The default logger: one line per message on standard error.
    public static let standardError: @Sendable (LogLevel, String) -> Void = { level, message in
        FileHandle.standardError.write(Data("vexil: \(level): \(message)\n".utf8))
    }

    var native: NativeLogLevel {
        switch self {
        case .error: return .error
        case .warn: return .warn
        case .info: return .info
        case .debug: return .debug
        case .trace: return .trace
        }
    }

    init(_ native: NativeLogLevel) {
        switch native {
        case .error: self = .error
        case .warn: self = .warn
        case .info: self = .info
        case .debug: self = .debug
        case .trace: self = .trace
        }
    }
}

/// The version of this SDK, sent to the server with syncs and event batches.
public let vexilSwiftVersion = "0.1.0"

/// Where a client stands.
public enum ClientStatus: Sendable, Equatable {
    /// Waiting for the first data (cached or bootstrap data is served meanwhile).
    case initializing
    /// Connected, with current data.
    case ready
    /// Connection lost, or data older than `maxCacheAge`: the last good data is served while
    /// reconnecting.
    case stale(reason: String)
    /// Offline mode.
    case offline
    /// The server refused the key; no retry.
    case failed(reason: String)
    /// `close()` was called.
    case closed

    init(_ native: NativeStatus) {
        switch native {
        case .initializing: self = .initializing
        case .ready: self = .ready
        case .stale(let reason): self = .stale(reason: reason)
        case .offline: self = .offline
        case .failed(let reason): self = .failed(reason: reason)
        case .closed: self = .closed
        }
    }

    /// The protocol name (`READY`, `STALE`, …).
    public var name: String {
        switch self {
        case .initializing: return "INITIALIZING"
        case .ready: return "READY"
        case .stale: return "STALE"
        case .offline: return "OFFLINE"
        case .failed: return "FAILED"
        case .closed: return "CLOSED"
        }
    }
}

/// Where the data behind an answer came from.
public enum DataSource: String, Sendable, Equatable {
    case network = "NETWORK"
    case stale = "STALE"
    case cache = "CACHE"
    case bootstrap = "BOOTSTRAP"
    case defaults = "DEFAULTS"

    init(_ native: NativeSource) {
        switch native {
        case .network: self = .network
        case .stale: self = .stale
        case .cache: self = .cache
        case .bootstrap: self = .bootstrap
        case .defaults: self = .defaults
        }
    }
}

/// Why the default was served.
public enum EvaluationErrorKind: String, Sendable, Equatable {
    case flagNotFound = "FLAG_NOT_FOUND"
    case wrongType = "WRONG_TYPE"
    case malformedFlag = "MALFORMED_FLAG"
    case invalidContext = "INVALID_CONTEXT"
    case clientNotReady = "CLIENT_NOT_READY"
    /// The native library failed (see `VexilError.internalError`); reported by this SDK only.
    case internalError = "INTERNAL_ERROR"

    init(_ native: NativeErrorKind) {
        switch native {
        case .flagNotFound: self = .flagNotFound
        case .wrongType: self = .wrongType
        case .malformedFlag: self = .malformedFlag
        case .invalidContext: self = .invalidContext
        case .clientNotReady: self = .clientNotReady
        }
    }
}

/// Why a value was served.
public enum EvaluationReason: Sendable, Equatable {
    case off
    case targetMatch
    case ruleMatch(index: Int, id: String)
    case `fallthrough`
    case prerequisiteFailed(prerequisiteKey: String)
    case error(EvaluationErrorKind)

    init(_ native: NativeReason) {
        switch native {
        case .off: self = .off
        case .targetMatch: self = .targetMatch
        case .ruleMatch(let index, let id): self = .ruleMatch(index: Int(index), id: id)
        case .fallthrough: self = .fallthrough
        case .prerequisiteFailed(let key): self = .prerequisiteFailed(prerequisiteKey: key)
        case .error(let kind): self = .error(EvaluationErrorKind(kind))
        }
    }

    /// The reason as the JSON object of the conformance vectors
    /// (`{"kind": "RULE_MATCH", "rule_index": 0, "rule_id": "r"}`).
    public var jsonValue: JSONValue {
        switch self {
        case .off: return ["kind": "OFF"]
        case .targetMatch: return ["kind": "TARGET_MATCH"]
        case .ruleMatch(let index, let id):
            return ["kind": "RULE_MATCH", "rule_index": .number(Double(index)), "rule_id": .string(id)]
        case .fallthrough: return ["kind": "FALLTHROUGH"]
        case .prerequisiteFailed(let key):
            return ["kind": "PREREQUISITE_FAILED", "prerequisite_key": .string(key)]
        case .error(let kind): return ["kind": "ERROR", "error_kind": .string(kind.rawValue)]
        }
    }
}

/// A variation with everything known about it.
public struct EvaluationDetail<Value: Sendable>: Sendable {
    public var value: Value
    /// The index of the variation served; `nil` when the default was returned.
    public var variationIndex: Int?
    public var reason: EvaluationReason
    public var inExperiment: Bool
    public var experimentKey: String?
    /// The flag's version (0 when unknown).
    public var flagVersion: Int64
    public var source: DataSource
    /// The environment version of the data (0 when none).
    public var environmentVersion: Int64
}

extension EvaluationDetail: Equatable where Value: Equatable {}

/// The type a variation is asked for.
public enum FlagValueType: String, Sendable {
    case bool, string, number, json

    var native: NativeValueKind {
        switch self {
        case .bool: return .bool
        case .string: return .string
        case .number: return .number
        case .json: return .json
        }
    }

    /// The type of a default value, as the conformance vectors read it (`null`, arrays and
    /// objects: `json`).
    public init(of value: JSONValue) {
        switch value {
        case .bool: self = .bool
        case .string: self = .string
        case .number: self = .number
        default: self = .json
        }
    }
}

/// A change of flag data.
public struct FlagChange: Sendable, Equatable {
    /// The flags whose definition or value may have changed, in key order.
    public var flagKeys: [String]
    /// The environment version after the change.
    public var version: Int64
}

/// Counters of the event pipeline.
public struct EventStats: Sendable, Equatable {
    public var dropped: UInt64
    public var sent: UInt64
    public var failedBatches: UInt64
    public var queued: UInt64
}
