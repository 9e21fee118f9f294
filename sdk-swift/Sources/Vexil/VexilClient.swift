import Dispatch
import Foundation
import VexilNative

/// A Vexil client: keeps flag data current in the background and answers variation calls at
/// once, from memory. Create one per SDK key and share it (it is `Sendable`; every method may be
/// called from any thread or task).
///
/// ```swift
/// let client = try VexilClient(options: VexilOptions(sdkKey: "vxl-mobile-…"))
/// _ = try await client.waitForInitialization(timeout: 5)
/// let alice = Context.user("alice").with("plan", "pro").build()
/// if client.boolVariation("new-checkout", context: alice, default: false) { … }
/// ```
///
/// Variation calls never throw and never wait for the network: before data arrives, or for an
/// unknown flag, a wrong type or an invalid context, they answer the default, and the `…Detail`
/// calls say why. Calls that wait (`waitForInitialization`, `identify`, `flush`, `close`) are
/// `async` and never block the caller's thread.
public final class VexilClient: @unchecked Sendable {
    // @unchecked: every stored property is immutable or guarded by `lock`, and the native
    // client is thread-safe (a Rust `Sync` object behind an `Arc`).
    private let native: NativeClient
    /// `native`'s address, for the fast variation calls (see `FastCall.swift`).
    private let nativeAddress: UInt64
    private let lock = NSLock()
    private var streams: [UInt64: AsyncStream<FlagChange>.Continuation] = [:]

    /// Starts a client at once (from the cache or bootstrap file when there is one); never
    /// waits for the network. Throws `VexilError.invalidOptions` naming the field at fault.
    public init(options: VexilOptions) throws {
        let nativeOptions = try options.native()
        if let testData = options.testData {
            native = try vexilNative { try NativeClient.withTestData(options: nativeOptions, testData: testData.native) }
        } else if let logger = options.logger {
            native = try vexilNative {
                try NativeClient.withLogger(
                    options: nativeOptions, logger: LogRelay(logger), maxLevel: options.logLevel.native)
            }
        } else {
            native = try vexilNative { try NativeClient(options: nativeOptions) }
        }
        nativeAddress = try vexilNative { [native] in try native.address() }
    }

    deinit {
        for continuation in streams.values { continuation.finish() }
    }

    // MARK: - State

    /// The client's status now.
    public var status: ClientStatus {
        (try? ClientStatus(native.status())) ?? .failed(reason: "the native library failed")
    }

    /// Where the data being served comes from now.
    public var source: DataSource {
        (try? DataSource(native.source())) ?? .defaults
    }

    /// The environment version of the data held (0 when none).
    public var version: Int64 {
        (try? native.version()) ?? 0
    }

    /// Counters of the event pipeline.
    public var eventStats: EventStats {
        guard let stats = try? native.eventStats() else {
            return EventStats(dropped: 0, sent: 0, failedBatches: 0, queued: 0)
        }
        return EventStats(
            dropped: stats.dropped, sent: stats.sent, failedBatches: stats.failedBatches,
            queued: stats.queued)
    }

    /// Waits until the first data from the server arrives, the key is refused, or `timeout`
    /// (seconds) passes, and returns the status then (`.ready`, `.failed`, or still
    /// `.initializing`). Suspends between checks of the status; never blocks a thread. Throws
    /// `CancellationError` when the task is cancelled.
    @discardableResult
    public func waitForInitialization(timeout: TimeInterval) async throws -> ClientStatus {
        let deadline = DispatchTime.now().uptimeNanoseconds &+ nanoseconds(timeout)
        while true {
            let status = try vexilNative { ClientStatus(try native.status()) }
            let now = DispatchTime.now().uptimeNanoseconds
            if status != .initializing || now >= deadline {
                return status
            }
            try await Task.sleep(nanoseconds: min(statusPollInterval, deadline - now))
        }
    }

    // MARK: - Variations

    public func boolVariation(_ flagKey: String, context: Context, default defaultValue: Bool) -> Bool {
        fastCall(flagKey, context, defaultValue) {
            try fastBoolVariation(
                client: $0, context: $1, flagKeyUtf8: $2, flagKeyLen: $3, defaultValue: defaultValue)
        }
    }

    public func stringVariation(_ flagKey: String, context: Context, default defaultValue: String) -> String {
        guard let nativeContext = context.native else { return defaultValue }
        return (try? native.stringVariation(flagKey: flagKey, context: nativeContext, defaultValue: defaultValue))
            ?? defaultValue
    }

    public func numberVariation(_ flagKey: String, context: Context, default defaultValue: Double) -> Double {
        fastCall(flagKey, context, defaultValue) {
            try fastNumberVariation(
                client: $0, context: $1, flagKeyUtf8: $2, flagKeyLen: $3, defaultValue: defaultValue)
        }
    }

    /// Any flag's value as JSON (no type check).
    public func jsonVariation(_ flagKey: String, context: Context, default defaultValue: JSONValue) -> JSONValue {
        guard let nativeContext = context.native,
            let text = try? native.jsonVariation(
                flagKey: flagKey, context: nativeContext, defaultJson: defaultValue.jsonText),
            let value = try? JSONValue(parsing: text)
        else { return defaultValue }
        return value
    }

    public func boolVariationDetail(_ flagKey: String, context: Context, default defaultValue: Bool)
        -> EvaluationDetail<Bool>
    {
        typed(variationDetail(flagKey, context: context, default: .bool(defaultValue), as: .bool), defaultValue) {
            $0.boolValue
        }
    }

    public func stringVariationDetail(_ flagKey: String, context: Context, default defaultValue: String)
        -> EvaluationDetail<String>
    {
        typed(variationDetail(flagKey, context: context, default: .string(defaultValue), as: .string), defaultValue) {
            $0.stringValue
        }
    }

    public func numberVariationDetail(_ flagKey: String, context: Context, default defaultValue: Double)
        -> EvaluationDetail<Double>
    {
        typed(variationDetail(flagKey, context: context, default: .number(defaultValue), as: .number), defaultValue) {
            $0.numberValue
        }
    }

    public func jsonVariationDetail(_ flagKey: String, context: Context, default defaultValue: JSONValue)
        -> EvaluationDetail<JSONValue>
    {
        variationDetail(flagKey, context: context, default: defaultValue, as: .json)
    }

    /// A variation of the type `type` with its detail, for callers that hold values as JSON
    /// (the default is served when the flag's value is not of that type).
    public func variationDetail(
        _ flagKey: String, context: Context, default defaultValue: JSONValue, as type: FlagValueType
    ) -> EvaluationDetail<JSONValue> {
        do {
            guard let nativeContext = context.native else {
                throw VexilError.invalidContext(context.validationError ?? "context: not built")
            }
            let detail = try native.variationDetail(
                flagKey: flagKey, context: nativeContext, kind: type.native,
                defaultJson: defaultValue.jsonText)
            return try convert(detail, value: detail.valueJson.map(JSONValue.init(parsing:)) ?? defaultValue)
        } catch {
            return EvaluationDetail(
                value: defaultValue, variationIndex: nil, reason: .error(.internalError), inExperiment: false,
                experimentKey: nil, flagVersion: 0, source: .defaults, environmentVersion: 0)
        }
    }

    /// Every flag's detail for a context (remote mode: the identified context's values). A flag
    /// that cannot be served has a `nil` value and a reason saying why. Throws
    /// `VexilError.invalidContext` for an invalid context.
    public func allFlags(context: Context) throws -> [String: EvaluationDetail<JSONValue?>] {
        let nativeContext = try valid(context)
        let flags = try vexilNative { try native.allFlags(context: nativeContext) }
        var out: [String: EvaluationDetail<JSONValue?>] = [:]
        out.reserveCapacity(flags.count)
        for (key, detail) in flags {
            out[key] = try convert(detail, value: try detail.valueJson.map(JSONValue.init(parsing:)))
        }
        return out
    }

    // MARK: - Context and events

    /// Remote mode (mobile and client keys): evaluates for `context` from now on, and waits up
    /// to `timeout` seconds for its values (the previous context's values are served
    /// meanwhile). Returns whether they arrived. Local mode only stores the context. The wait
    /// happens off the caller's thread.
    @discardableResult
    public func identify(_ context: Context, timeout: TimeInterval = 5) async throws -> Bool {
        let nativeContext = try valid(context)
        let millis = nanoseconds(timeout) / 1_000_000
        return try await offThread { try $0.identify(context: nativeContext, timeoutMs: millis) }
    }

    /// Records a metric event (`purchase`, optionally with a value) for a context. Returns at
    /// once: the event is queued and sent in the background. Throws for an invalid context or
    /// an empty name.
    public func track(_ eventName: String, context: Context, value: Double? = nil) throws {
        let nativeContext = try valid(context)
        try vexilNative { try native.track(eventName: eventName, context: nativeContext, value: value) }
    }

    /// Sends every pending event now, waiting up to `timeout` seconds (off the caller's
    /// thread). Returns whether everything was delivered.
    @discardableResult
    public func flush(timeout: TimeInterval = 5) async throws -> Bool {
        let millis = nanoseconds(timeout) / 1_000_000
        return try await offThread { try $0.flush(timeoutMs: millis) }
    }

    /// Flushes pending events (up to 5 s), stops the background work and ends every change
    /// stream. Variation calls keep answering from the last data. Calling it again does
    /// nothing. Releasing the last reference to the client closes it too.
    public func close() async {
        let ended = takeStreams()
        for continuation in ended { continuation.finish() }
        _ = try? await offThread { try $0.close() }
    }

    // MARK: - Changes

    /// A stream of flag data changes (one element per change: the flags that may have changed
    /// and the new environment version). Each call makes a new stream; it ends when the
    /// client is closed, and stops listening when its consumer stops iterating.
    public func changes(bufferingPolicy: AsyncStream<FlagChange>.Continuation.BufferingPolicy = .unbounded)
        -> AsyncStream<FlagChange>
    {
        AsyncStream(bufferingPolicy: bufferingPolicy) { continuation in
            let relay = ChangeRelay(continuation: continuation)
            guard let handle = try? native.addChangeListener(listener: relay) else {
                continuation.finish()
                return
            }
            lock.lock()
            streams[handle] = continuation
            lock.unlock()
            let native = self.native
            continuation.onTermination = { [weak self] _ in
                try? native.removeChangeListener(handle: handle)
                guard let self else { return }
                self.lock.lock()
                self.streams[handle] = nil
                self.lock.unlock()
            }
        }
    }

    // MARK: - Benchmarks

    /// Times `iterations` calls of `boolVariation` made inside the native library with the
    /// same arguments and returns the total in nanoseconds: the engine's own cost, to compare
    /// with the cost of the call from Swift.
    @_spi(Benchmark)
    public func _nativeBoolVariationNanoseconds(_ flagKey: String, context: Context, iterations: UInt64) throws
        -> UInt64
    {
        let nativeContext = try valid(context)
        return try vexilNative {
            try native.benchmarkBoolVariation(flagKey: flagKey, context: nativeContext, iterations: iterations)
        }
    }

    // MARK: - Private

    /// Runs a fast variation call (see `FastCall.swift`) with this client's and the context's
    /// addresses and the flag key's UTF-8 bytes in place; any failure answers the default.
    @inline(__always)
    private func fastCall<T>(
        _ flagKey: String, _ context: Context, _ defaultValue: T,
        _ call: (UInt64, UInt64, UInt64, UInt64) throws -> T
    ) -> T {
        let contextAddress = context.nativeAddress
        guard contextAddress != 0 else { return defaultValue }
        // The addresses stay valid while `self` and `context` (which own the native objects)
        // are alive, which the extended lifetime guarantees until the call has returned.
        return withExtendedLifetime(self) {
            withExtendedLifetime(context) {
                withFlagKeyBytes(flagKey) { bytes, count in
                    (try? call(nativeAddress, contextAddress, bytes, count)) ?? defaultValue
                }
            }
        }
    }

    private func valid(_ context: Context) throws -> NativeContext {
        if let problem = context.validationError { throw VexilError.invalidContext(problem) }
        guard let nativeContext = context.native else { throw VexilError.invalidContext("context: not built") }
        return nativeContext
    }

    private func takeStreams() -> [AsyncStream<FlagChange>.Continuation] {
        lock.lock()
        defer { lock.unlock() }
        let all = Array(streams.values)
        streams.removeAll()
        return all
    }

    /// Runs a blocking native call on a dispatch queue, so that no thread of Swift's
    /// cooperative pool (or the main thread) waits on it.
    private func offThread<T>(_ call: @escaping @Sendable (NativeClient) throws -> T) async throws -> T {
        let native = self.native
        return try await withCheckedThrowingContinuation { continuation in
            blockingCalls.async {
                continuation.resume(with: Result { try vexilNative { try call(native) } })
            }
        }
    }

    private func convert<V>(_ detail: NativeDetail, value: V) throws -> EvaluationDetail<V> {
        EvaluationDetail(
            value: value, variationIndex: detail.variation.map { Int($0) }, reason: EvaluationReason(detail.reason),
            inExperiment: detail.inExperiment, experimentKey: detail.experimentKey,
            flagVersion: detail.flagVersion, source: DataSource(detail.source), environmentVersion: detail.version)
    }

    private func typed<V>(_ detail: EvaluationDetail<JSONValue>, _ defaultValue: V, _ extract: (JSONValue) -> V?)
        -> EvaluationDetail<V>
    {
        EvaluationDetail(
            value: extract(detail.value) ?? defaultValue, variationIndex: detail.variationIndex,
            reason: detail.reason, inExperiment: detail.inExperiment, experimentKey: detail.experimentKey,
            flagVersion: detail.flagVersion, source: detail.source, environmentVersion: detail.environmentVersion)
    }
}

/// Hands the native client's log messages to the options' logger.
private final class LogRelay: NativeLogger, @unchecked Sendable {
    // @unchecked: the closure is `@Sendable`; nothing else is stored.
    private let logger: @Sendable (LogLevel, String) -> Void

    init(_ logger: @escaping @Sendable (LogLevel, String) -> Void) {
        self.logger = logger
    }

    func log(level: NativeLogLevel, message: String) {
        logger(LogLevel(level), message)
    }
}

/// Forwards native change notifications (on the client's background thread) into a stream.
private final class ChangeRelay: NativeChangeListener, @unchecked Sendable {
    // @unchecked: the continuation is thread-safe; nothing else is stored.
    private let continuation: AsyncStream<FlagChange>.Continuation

    init(continuation: AsyncStream<FlagChange>.Continuation) {
        self.continuation = continuation
    }

    func onChange(change: NativeFlagChange) {
        continuation.yield(FlagChange(flagKeys: change.flagKeys, version: change.version))
    }
}

/// Where blocking native calls (identify, flush, close) wait.
private let blockingCalls = DispatchQueue(label: "vexil.blocking-calls", qos: .utility, attributes: .concurrent)

/// How often `waitForInitialization` looks at the status.
private let statusPollInterval: UInt64 = 5_000_000

private func nanoseconds(_ seconds: TimeInterval) -> UInt64 {
    guard seconds.isFinite, seconds > 0 else { return 0 }
    return seconds >= 1e9 ? UInt64.max / 2 : UInt64(seconds * 1e9)
}
