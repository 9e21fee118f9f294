package dev.vexil

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

    internal fun toJson(): String {
        fun millis(name: String, value: Long?) = value?.also {
            if (it < 0) throw InvalidConfigException("$name: must be 0 or more, got $it")
        }
        fun positive(name: String, value: Int?) = value?.also {
            if (it <= 0) throw InvalidConfigException("$name: must be above 0, got $it")
        }
        val fields = LinkedHashMap<String, JsonElement>()
        fun put(name: String, value: Any?) {
            when (value) {
                null -> {}
                is String -> fields[name] = JsonPrimitive(value)
                is Boolean -> fields[name] = JsonPrimitive(value)
                is Number -> fields[name] = JsonPrimitive(value)
                is JsonElement -> fields[name] = value
            }
        }
        put("endpoint", endpoint)
        put("cacheDir", cacheDir)
        put("bootstrap", bootstrap)
        put("offline", offline)
        put("context", context?.json)
        put("connectTimeoutMs", millis("connectTimeoutMillis", connectTimeoutMillis))
        put("streamTimeoutMs", millis("streamTimeoutMillis", streamTimeoutMillis))
        put("initialBackoffMs", millis("initialBackoffMillis", initialBackoffMillis))
        put("maxBackoffMs", millis("maxBackoffMillis", maxBackoffMillis))
        put("maxCacheAgeMs", millis("maxCacheAgeMillis", maxCacheAgeMillis))
        put("eventsEnabled", eventsEnabled)
        put("eventCapacity", positive("eventCapacity", eventCapacity))
        put("eventBatchSize", positive("eventBatchSize", eventBatchSize))
        put("flushIntervalMs", millis("flushIntervalMillis", flushIntervalMillis))
        put("evaluationSummaries", evaluationSummaries)
        put("sdkName", "vexil-kotlin")
        put("sdkVersion", VexilClient.VERSION)
        return JsonObject(fields).toString()
    }
}
