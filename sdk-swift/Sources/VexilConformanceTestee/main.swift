// The Swift SDK's conformance testee: answers the commands of conformance/PROTOCOL.md (one
// JSON object per line on stdin, one answer per line on stdout) through the public API of
// `Vexil` only.
import Dispatch
import Foundation
import Vexil

/// Changes reported by the client's change stream, queued until a `wait_change` takes them.
final class ChangeQueue: @unchecked Sendable {
    // @unchecked: `pending` is only touched under `condition`.
    private let condition = NSCondition()
    private var pending: [FlagChange] = []

    func push(_ change: FlagChange) {
        condition.lock()
        pending.append(change)
        condition.broadcast()
        condition.unlock()
    }

    /// The first queued change (of `flag`, when given) within `timeout` seconds.
    func take(flag: String?, timeout: TimeInterval) -> FlagChange? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while true {
            while !pending.isEmpty {
                let change = pending.removeFirst()
                if flag == nil || change.flagKeys.contains(flag!) { return change }
            }
            if !condition.wait(until: deadline) { return nil }
        }
    }
}

struct CommandError: Error {
    let message: String
}

/// Runs an async call to completion from the synchronous command loop.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let semaphore = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: Result<T, Error>!
    Task.detached {
        do { result = .success(try await body()) } catch { result = .failure(error) }
        semaphore.signal()
    }
    semaphore.wait()
    return try result.get()
}

final class Testee {
    var client: VexilClient?
    var changes: ChangeQueue?
    var listening: Task<Void, Never>?

    func required(_ command: [String: JSONValue], _ field: String) throws -> String {
        guard let value = command[field]?.stringValue else { throw CommandError(message: "\(field): required") }
        return value
    }

    func seconds(_ command: [String: JSONValue], _ field: String, _ defaultMillis: Double) -> TimeInterval {
        (command[field]?.numberValue ?? defaultMillis) / 1000
    }

    func current() throws -> VexilClient {
        guard let client else { throw CommandError(message: "no client: send `create` first") }
        return client
    }

    func context(_ command: [String: JSONValue]) -> Context {
        Context(jsonValue: command["context"] ?? .null)
    }

    func closeClient() throws {
        listening?.cancel()
        listening = nil
        if let old = client {
            client = nil
            try blocking { await old.close() }
        }
    }

    func handle(_ command: [String: JSONValue]) throws -> [String: JSONValue] {
        let name = try required(command, "cmd")
        switch name {
        case "create":
            try closeClient()
            var options = VexilOptions(sdkKey: try required(command, "sdk_key"))
            options.endpoint = command["endpoint"]?.stringValue
            options.cacheDirectory = command["cache_dir"]?.stringValue
            options.bootstrapFile = command["bootstrap"]?.stringValue
            options.offline = command["offline"]?.boolValue ?? false
            if let context = command["context"], context != .null {
                options.context = Context(jsonValue: context)
            }
            options.initialBackoff = 0.1
            options.maxBackoff = 0.5
            options.streamTimeout = 5
            options.flushInterval = seconds(command, "flush_interval_ms", 5000)
            if case .array(let references)? = command["private_attributes"] {
                options.privateAttributes = references.compactMap { $0.stringValue }
            }
            options.allAttributesPrivate = command["all_attributes_private"]?.boolValue ?? false
            let client: VexilClient
            do {
                client = try VexilClient(options: options)
            } catch {
                throw CommandError(message: "\(error)")
            }
            let queue = ChangeQueue()
            let stream = client.changes()
            listening = Task.detached {
                for await change in stream { queue.push(change) }
            }
            self.client = client
            self.changes = queue
            return [:]
        case "wait_init":
            let client = try current()
            let timeout = seconds(command, "timeout_ms", 5000)
            let status = try blocking { try await client.waitForInitialization(timeout: timeout) }
            return ["status": .string(status.name)]
        case "evaluate":
            let client = try current()
            let flag = try required(command, "flag")
            let defaultValue = command["default"] ?? .null
            let type: FlagValueType
            if let typeName = command["type"]?.stringValue {
                guard let explicit = FlagValueType(rawValue: typeName) else {
                    throw CommandError(message: "type: unknown \(typeName)")
                }
                type = explicit
            } else {
                type = FlagValueType(of: defaultValue)
            }
            let detail = client.variationDetail(flag, context: context(command), default: defaultValue, as: type)
            return [
                "value": detail.value,
                "variation": detail.variationIndex.map { .number(Double($0)) } ?? .null,
                "reason": detail.reason.jsonValue,
                "in_experiment": .bool(detail.inExperiment),
                "source": .string(detail.source.rawValue),
                "version": .number(Double(detail.environmentVersion)),
            ]
        case "evaluate_all":
            let flags = try current().allFlags(context: context(command))
            var out: [String: JSONValue] = [:]
            for (key, detail) in flags {
                out[key] = [
                    "value": detail.value ?? .null,
                    "variation": detail.variationIndex.map { .number(Double($0)) } ?? .null,
                    "reason": detail.reason.jsonValue,
                    "in_experiment": .bool(detail.inExperiment),
                ]
            }
            return ["flags": .object(out)]
        case "identify":
            let client = try current()
            let context = context(command)
            let timeout = seconds(command, "timeout_ms", 5000)
            let arrived = try blocking { try await client.identify(context, timeout: timeout) }
            return ["arrived": .bool(arrived)]
        case "track":
            try current().track(try required(command, "name"), context: context(command), value: command["value"]?.numberValue)
            return [:]
        case "flush":
            let client = try current()
            let timeout = seconds(command, "timeout_ms", 5000)
            let delivered = try blocking { try await client.flush(timeout: timeout) }
            return ["delivered": .bool(delivered)]
        case "wait_change":
            guard let changes else { throw CommandError(message: "no client") }
            let change = changes.take(flag: command["flag"]?.stringValue, timeout: seconds(command, "timeout_ms", 5000))
            return [
                "changed": .bool(change != nil),
                "flag_keys": .array((change?.flagKeys ?? []).map { .string($0) }),
            ]
        case "status":
            let client = try current()
            let events = client.eventStats
            return [
                "status": .string(client.status.name),
                "source": .string(client.source.rawValue),
                "version": .number(Double(client.version)),
                "events": [
                    "dropped": .number(Double(events.dropped)), "sent": .number(Double(events.sent)),
                    "queued": .number(Double(events.queued)),
                ],
            ]
        case "close":
            try closeClient()
            return [:]
        default:
            throw CommandError(message: "cmd: unknown command \(name)")
        }
    }
}

let testee = Testee()
while let line = readLine(strippingNewline: true) {
    if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
    var answer: [String: JSONValue]
    do {
        let parsed = try JSONValue(parsing: line)
        guard let command = parsed.objectValue else { throw CommandError(message: "not a JSON object") }
        let id = command["id"] ?? .null
        do {
            answer = try testee.handle(command)
            answer["ok"] = true
        } catch let error as CommandError {
            answer = ["ok": false, "error": .string(error.message)]
        } catch {
            answer = ["ok": false, "error": .string("\(error)")]
        }
        answer["id"] = id
    } catch {
        answer = ["id": .null, "ok": false, "error": .string("\(error)")]
    }
    print(JSONValue.object(answer).jsonText)
    fflush(stdout)
}
try? testee.closeClient()
