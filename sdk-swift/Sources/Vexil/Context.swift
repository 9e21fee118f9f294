import VexilNative

/// What a flag is evaluated for: a single context (a kind, a key and attributes) or a
/// multi-kind context holding several.
///
/// A `Context` is validated and converted to the native form once, when it is built; reuse it
/// for any number of calls. Building never throws: an invalid context evaluates to the default
/// value with an `invalidContext` error reason (evaluation never throws), and
/// ``validationError`` says what is wrong. Calls that cannot answer with a default (``VexilClient/track(_:context:value:)``,
/// ``VexilClient/identify(_:timeout:)``, ``VexilClient/allFlags(context:)``) throw instead.
///
/// ```swift
/// let alice = Context.user("alice").with("email", "alice@example.com").build()
/// let both = Context.multi(Context.user("alice"), Context.builder(kind: "organization", key: "acme"))
/// ```
public final class Context: Sendable, CustomStringConvertible {
    /// `nil` only when the native library failed to build it (then every call answers defaults).
    let native: NativeContext?
    /// `native`'s address for the fast variation calls (see `FastCall.swift`); 0 without one.
    let nativeAddress: UInt64
    /// The canonical JSON of the context (as given, when it is invalid).
    public let json: String
    /// What is wrong with this context, or `nil` when it is valid.
    public let validationError: String?

    /// A context from its canonical JSON (conformance/SCHEMA.md, "Context"), as a server
    /// might send it.
    public convenience init(json: String) {
        self.init(nativeFrom: json)
    }

    /// A context from its JSON value.
    public convenience init(jsonValue: JSONValue) {
        self.init(nativeFrom: jsonValue.jsonText)
    }

    private init(nativeFrom text: String) {
        var native: NativeContext?
        var problem: String?
        var canonical = text
        do {
            let built = try NativeContext.fromJson(json: text)
            problem = try built.validationError()
            canonical = try built.toJson()
            native = built
        } catch {
            // Only a failure of the native library gets here; such a context answers defaults.
            problem = "context: \(VexilError.from(error))"
        }
        self.native = native
        self.nativeAddress = (try? native?.address()) ?? 0
        self.validationError = problem
        self.json = canonical
    }

    public var isValid: Bool { validationError == nil }

    public var description: String { json }

    /// A builder of a `user` context.
    public static func user(_ key: String) -> ContextBuilder {
        ContextBuilder(kind: "user", key: key)
    }

    /// A builder of a context of any kind (`organization`, `device`, …).
    public static func builder(kind: String, key: String) -> ContextBuilder {
        ContextBuilder(kind: kind, key: key)
    }

    /// A multi-kind context, one part per kind.
    public static func multi(_ parts: ContextBuilder...) -> Context {
        multi(parts)
    }

    public static func multi(_ parts: [ContextBuilder]) -> Context {
        Context(jsonValue: .object(["kind": "multi", "contexts": .array(parts.map(\.jsonValue))]))
    }
}

/// Builds a single context. A value type: set what you need, then `build()` once and reuse the
/// `Context`.
public struct ContextBuilder: Sendable, Equatable {
    public var kind: String
    public var key: String
    public var attributes: [String: JSONValue] = [:]
    /// Attributes of this context that events never carry: names, or JSON Pointers into the
    /// attributes (`/address/street`). Flags are still evaluated with them; events list their
    /// names, never their values.
    public var privateAttributes: [String] = []

    public init(kind: String = "user", key: String) {
        self.kind = kind
        self.key = key
    }

    /// Sets an attribute (`"email"`, `"plan"`; nested values as `JSONValue` objects).
    public mutating func set(_ name: String, _ value: JSONValue) {
        attributes[name] = value
    }

    /// A copy with the attribute set, for chaining.
    public func with(_ name: String, _ value: JSONValue) -> ContextBuilder {
        var copy = self
        copy.set(name, value)
        return copy
    }

    /// The canonical JSON value of this context.
    public var jsonValue: JSONValue {
        var object: [String: JSONValue] = ["kind": .string(kind), "key": .string(key)]
        if !attributes.isEmpty { object["attributes"] = .object(attributes) }
        if !privateAttributes.isEmpty {
            object["private_attributes"] = .array(privateAttributes.map { .string($0) })
        }
        return .object(object)
    }

    /// Validates and converts the context (once).
    public func build() -> Context {
        Context(jsonValue: jsonValue)
    }
}
