package dev.vexil

import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive

/**
 * Settings of a [VexilClient]. Every option has a production default; `null` means "the
 * default". Kotlin: `VexilClient(key) { endpoint = "https://flags.example.com:443"; cacheDir = … }`;
 * Java: set the properties on `new VexilOptions()`.
 */
@VexilDsl
class VexilOptions {
    /** The server's gRPC endpoint, `http://host:port` or `https://host:port`. */
    var endpoint: String? = null

    /** Where the last good data is kept and read at the next start (Android: `context.cacheDir`). */
    var cacheDir: String? = null

    /** A ruleset JSON file (the export format) served until better data arrives. */
    var bootstrap: String? = null

    /** No network at all: cache, bootstrap or defaults. */
    var offline: Boolean = false

    /** Client and mobile keys: the context whose values are watched first (see [VexilClient.identify]). */
    var context: Context? = null

    var connectTimeoutMillis: Long? = null

    /** A stream silent (not even a heartbeat) for this long is reconnected. */
    var streamTimeoutMillis: Long? = null

    /** Reconnection backoff: the first delay, doubling up to [maxBackoffMillis], jittered. */
    var initialBackoffMillis: Long? = null
    var maxBackoffMillis: Long? = null

    /** Cached data older than this is reported [Source.STALE]. */
    var maxCacheAgeMillis: Long? = null

    /** Send exposures, track events and evaluation summaries at all. */
    var eventsEnabled: Boolean? = null

    /** Events held at most while waiting to be sent; beyond, new ones are dropped and counted. */
    var eventCapacity: Int? = null
    var eventBatchSize: Int? = null

    /** How often pending events are sent. */
    var flushIntervalMillis: Long? = null

    /** Count evaluations per flag and variation and send the counts. */
    var evaluationSummaries: Boolean? = null

    /**
     * Attributes that events never carry, on every context (private attributes): names, or
     * JSON Pointers into the attributes (`/address/street`). Their values are removed before
     * an event is queued and their names listed in the context's `redacted_attributes`;
     * evaluation still reads them.
     */
    var privateAttributes: List<String>? = null

    /** Every attribute private: events carry kinds and keys only. */
    var allAttributesPrivate: Boolean? = null

    /**
     * Where the client's messages go: by default SLF4J's logger `dev.vexil` when SLF4J has a
     * provider, else java.util.logging's; [VexilLogger.NONE] for nowhere.
     */
    var logger: VexilLogger? = null

    /**
     * Tests: serve this in-memory data instead of the server's. The client evaluates locally
     * whatever the key's kind, is ready at once, uses no network and writes no cache.
     */
    var testData: TestData? = null

    /**
     * The options in the SDK core's JSON form (camelCase, durations in milliseconds, the event
     * settings under `events`). The core checks them and names a bad one by the property above.
     */
    internal fun toJson(): String {
        val fields = LinkedHashMap<String, JsonElement>()
        val events = LinkedHashMap<String, JsonElement>()
        fun put(into: MutableMap<String, JsonElement>, name: String, value: Any?) {
            when (value) {
                null -> {}
                is String -> into[name] = JsonPrimitive(value)
                is Boolean -> into[name] = JsonPrimitive(value)
                is Number -> into[name] = JsonPrimitive(value)
                is JsonElement -> into[name] = value
            }
        }
        put(fields, "endpoint", endpoint)
        put(fields, "cacheDir", cacheDir)
        put(fields, "bootstrap", bootstrap)
        put(fields, "offline", offline)
        put(fields, "context", context?.json)
        put(fields, "connectTimeoutMs", connectTimeoutMillis)
        put(fields, "streamTimeoutMs", streamTimeoutMillis)
        put(fields, "initialBackoffMs", initialBackoffMillis)
        put(fields, "maxBackoffMs", maxBackoffMillis)
        put(fields, "maxCacheAgeMs", maxCacheAgeMillis)
        put(fields, "sdkName", "vexil-kotlin")
        put(fields, "sdkVersion", VexilClient.VERSION)
        put(events, "enabled", eventsEnabled)
        put(events, "capacity", eventCapacity)
        put(events, "batchSize", eventBatchSize)
        put(events, "flushIntervalMs", flushIntervalMillis)
        put(events, "summaries", evaluationSummaries)
        put(events, "privateAttributes", privateAttributes?.let { names -> JsonArray(names.map(::JsonPrimitive)) })
        put(events, "allAttributesPrivate", allAttributesPrivate)
        if (events.isNotEmpty()) fields["events"] = JsonObject(events)
        return JsonObject(fields).toString()
    }
}
