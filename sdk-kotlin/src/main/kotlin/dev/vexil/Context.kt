package dev.vexil

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import java.io.Closeable

/**
 * An evaluation context: one kind (`user`, `device`, …) with a key and attributes, or several
 * kinds at once (multi-kind). Converted and validated once, natively, when built; reuse it for
 * as many calls as you like, from any thread. After [close] the context cannot be used any
 * more; its (small) native memory is released when the object is garbage collected, so that
 * calls never pay for reference counting.
 *
 * ```kotlin
 * val alice = context("user", "alice") { attr("country", "NL"); attr("beta", true) }
 * val both = multiContext {
 *     context("user", "alice") { attr("country", "NL") }
 *     context("organization", "acme") { attr("plan", "enterprise") }
 * }
 * ```
 */
class Context private constructor(json: JsonElement) : Closeable {
    /** The canonical JSON of this context (the form of the conformance SCHEMA). */
    val json: JsonElement = json

    internal val handle: Long

    init {
        NativeLibrary.ensureLoaded()
        handle = Native.contextNew(json.toString())
        val owned = handle
        NativeCleaner.register(this) { Native.contextFree(owned) }
    }

    /** The kind, or `multi` for a multi-kind context. */
    val kind: String get() = ((json as JsonObject)["kind"] as? JsonPrimitive)?.content ?: "user"

    /** Marks the context closed: calls with it throw [ClosedException]. Idempotent. */
    override fun close() {
        Native.contextClose(this, handle)
    }

    override fun toString(): String = "Context($json)"

    companion object {
        /** A context from its canonical JSON, e.g. received from a server. */
        @JvmStatic
        fun fromJson(json: String): Context {
            val element = try {
                Json.parseToJsonElement(json)
            } catch (e: IllegalArgumentException) {
                throw InvalidContextException("context: not valid JSON: ${e.message}")
            }
            return Context(element)
        }

        /** A context from its canonical JSON. */
        @JvmStatic
        fun fromJson(json: JsonElement): Context = Context(json)

        /** Java: `Context.builder("user", "alice").attr("country", "NL").build()`. */
        @JvmStatic
        fun builder(kind: String, key: String): ContextBuilder = ContextBuilder(kind, key)

        /** Java: `Context.multi(Context.builder("user", "a"), Context.builder("org", "o"))`. */
        @JvmStatic
        fun multi(vararg parts: ContextBuilder): Context =
            Context(JsonObject(mapOf("kind" to JsonPrimitive("multi"), "contexts" to JsonArray(parts.map { it.toJson() }))))

        internal fun of(json: JsonElement) = Context(json)
    }
}

/** Attributes of one kind of a context. */
@VexilDsl
class ContextBuilder internal constructor(private val kind: String, private val key: String) {
    private val attributes = LinkedHashMap<String, JsonElement>()
    private val privateAttributes = mutableListOf<String>()

    fun attr(name: String, value: String?): ContextBuilder = attr(name, JsonPrimitive(value))
    fun attr(name: String, value: Number?): ContextBuilder = attr(name, JsonPrimitive(value))
    fun attr(name: String, value: Boolean?): ContextBuilder = attr(name, JsonPrimitive(value))
    fun attr(name: String, values: List<String>): ContextBuilder = attr(name, JsonArray(values.map(::JsonPrimitive)))

    /** Any JSON value: objects are addressed by JSON Pointer in clauses (`/address/city`). */
    fun attr(name: String, value: JsonElement?): ContextBuilder {
        attributes[name] = value ?: JsonNull
        return this
    }

    /**
     * Marks attributes of this context that events never carry: names, or JSON Pointers into
     * the attributes (`/address/street`). Flags are still evaluated with them; events list
     * their names, never their values.
     */
    fun markPrivate(vararg references: String): ContextBuilder {
        privateAttributes += references
        return this
    }

    fun build(): Context = Context.of(toJson())

    internal fun toJson(): JsonObject {
        val fields = linkedMapOf<String, JsonElement>("kind" to JsonPrimitive(kind), "key" to JsonPrimitive(key))
        if (attributes.isNotEmpty()) fields["attributes"] = JsonObject(attributes)
        if (privateAttributes.isNotEmpty()) fields["private_attributes"] = JsonArray(privateAttributes.map(::JsonPrimitive))
        return JsonObject(fields)
    }
}

/** The kinds of a multi-kind context. */
@VexilDsl
class MultiContextBuilder internal constructor() {
    internal val parts = ArrayList<ContextBuilder>()

    fun context(kind: String, key: String, attributes: ContextBuilder.() -> Unit = {}) {
        parts += ContextBuilder(kind, key).apply(attributes)
    }
}

@DslMarker
annotation class VexilDsl

/** A single-kind context: `context("user", "alice") { attr("country", "NL") }`. */
fun context(kind: String, key: String, attributes: ContextBuilder.() -> Unit = {}): Context =
    ContextBuilder(kind, key).apply(attributes).build()

/** A multi-kind context: `multiContext { context("user", "a"); context("organization", "o") }`. */
fun multiContext(kinds: MultiContextBuilder.() -> Unit): Context =
    Context.multi(*MultiContextBuilder().apply(kinds).parts.toTypedArray())
