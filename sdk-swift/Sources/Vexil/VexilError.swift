import VexilNative

/// Why a Vexil call failed. Evaluation never throws (it answers the default with a reason);
/// these are for start-up, misuse and failures of the native library.
public enum VexilError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The options are not valid; the message names the field (`options.flushInterval: …`).
    case invalidOptions(String)
    /// The context is not valid; the message names the field (`context: key: …`).
    case invalidContext(String)
    /// Text given as JSON is not JSON.
    case invalidJSON(String)
    /// The client could not start its background work.
    case runtime(String)
    /// The native library failed unexpectedly (a bug in Vexil, such as a panic, caught at
    /// the boundary). The application is unaffected; the client may be used further.
    case internalError(String)

    public var description: String {
        switch self {
        case .invalidOptions(let m): return "invalid options: \(m)"
        case .invalidContext(let m): return "invalid context: \(m)"
        case .invalidJSON(let m): return "invalid JSON: \(m)"
        case .runtime(let m): return "runtime: \(m)"
        case .internalError(let m): return "internal error: \(m)"
        }
    }

    /// The one conversion from errors of the native layer.
    static func from(_ error: Error) -> VexilError {
        switch error {
        case let error as VexilError: return error
        case NativeError.InvalidOptions(let message): return .invalidOptions(message)
        case NativeError.InvalidContext(let message): return .invalidContext(message)
        case NativeError.Runtime(let message): return .runtime(message)
        default: return .internalError(String(describing: error))
        }
    }
}

/// Runs a native call, converting whatever it throws (including a caught panic).
@inline(__always)
func vexilNative<T>(_ call: () throws -> T) throws -> T {
    do {
        return try call()
    } catch {
        throw VexilError.from(error)
    }
}

/// Checks that a panic inside the native library reaches Swift as `VexilError.internalError`.
/// For the SDK's own tests.
@_spi(Testing)
public func _vexilTriggerNativePanic(_ message: String) throws {
    try vexilNative { try debugPanic(message: message) }
}
