package dev.vexil

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeoutOrNull
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.boolean
import kotlinx.serialization.json.double
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.long
import java.io.Closeable
import java.util.concurrent.CopyOnWriteArrayList
import java.util.logging.Level
import java.util.logging.Logger
import kotlin.time.Duration
import kotlin.time.Duration.Companion.seconds

/**
 * A Vexil client. It starts at once (never waiting for the network), keeps flag data current
 * in the background, and answers every variation call from memory, without blocking and
 * without throwing: before data arrives, for an unknown flag or a wrong type, the caller's
 * default is returned (the `…Detail` calls say why).
 *
 * The key decides the mode: `vxl-server-…` evaluates in process from the synced ruleset;
 * `vxl-client-…`/`vxl-mobile-…` receive values evaluated by the server for the identified
 * context (set it with [VexilOptions.context], change it with [identify]).
 *
 * Thread-safe. [close] flushes pending events and stops the background work; after it,
 * variation calls return their defaults and other calls do nothing.
 */
class VexilClient @JvmOverloads constructor(
    sdkKey: String,
    options: VexilOptions = VexilOptions(),
) : Closeable, AutoCloseable {

    /** Kotlin: `VexilClient(key) { endpoint = …; cacheDir = … }`. */
    constructor(sdkKey: String, configure: VexilOptions.() -> Unit) : this(sdkKey, VexilOptions().apply(configure))

    private val dispatcher = ChangeDispatcher()
    private val handle: Long

    init {
        NativeLibrary.ensureLoaded()
        val logger = options.logger ?: VexilLogger.default()
        val logSink = if (logger === VexilLogger.NONE) null else NativeLogSink(logger)
        val testData = options.testData
        handle = Native.clientNew(sdkKey, options.toJson(), dispatcher, logSink, testData, testData?.handle ?: 0L)
        val owned = handle
        NativeCleaner.register(this) { Native.clientFree(owned) }
    }

    // ----- variations ---------------------------------------------------------------------

    fun boolVariation(flagKey: String, context: Context, default: Boolean): Boolean =
        Native.boolVariation(this, handle, flagKey, flagKey.length, context, context.handle, default)

    fun stringVariation(flagKey: String, context: Context, default: String): String =
        Native.stringVariation(this, handle, flagKey, context, context.handle, default)

    /** A number flag's value (JSON numbers are doubles). */
    fun doubleVariation(flagKey: String, context: Context, default: Double): Double =
        Native.doubleVariation(this, handle, flagKey, flagKey.length, context, context.handle, default)

    /** Any flag's value as JSON, without a type check. */
    fun jsonVariation(flagKey: String, context: Context, default: JsonElement): JsonElement =
        Json.parseToJsonElement(Native.jsonVariation(this, handle, flagKey, context, context.handle, default.toString()))

    fun boolVariationDetail(flagKey: String, context: Context, default: Boolean): EvaluationDetail<Boolean> =
        detail(flagKey, context, FlagType.BOOL, JsonPrimitive(default)) { it.jsonPrimitive.boolean }

    fun stringVariationDetail(flagKey: String, context: Context, default: String): EvaluationDetail<String> =
        detail(flagKey, context, FlagType.STRING, JsonPrimitive(default)) { it.jsonPrimitive.content }

    fun doubleVariationDetail(flagKey: String, context: Context, default: Double): EvaluationDetail<Double> =
        detail(flagKey, context, FlagType.NUMBER, JsonPrimitive(default)) { it.jsonPrimitive.double }

    fun jsonVariationDetail(flagKey: String, context: Context, default: JsonElement): EvaluationDetail<JsonElement> =
        detail(flagKey, context, FlagType.JSON, default) { it }

    /** A variation of [type] with its detail, the default given as JSON. */
    fun variationDetail(flagKey: String, context: Context, type: FlagType, default: JsonElement): EvaluationDetail<JsonElement> =
        detail(flagKey, context, type, default) { it }

    /**
     * A variation for a context given as its canonical JSON (as received from elsewhere). An
     * invalid context is not an exception here: the default is served with an
     * `ERROR`/`INVALID_CONTEXT` reason (after the flag's own errors, in the engine's order).
     */
    fun variationDetail(flagKey: String, contextJson: String, type: FlagType, default: JsonElement): EvaluationDetail<JsonElement> {
        val answer = Native.variationDetailJson(this, handle, flagKey, contextJson, type.code, default.toString())
        return EvaluationDetail.parse(Json.parseToJsonElement(answer).jsonObject) { it }
    }

    private fun <T> detail(
        flagKey: String, context: Context, type: FlagType, default: JsonElement, value: (JsonElement) -> T,
    ): EvaluationDetail<T> {
        val answer = Native.variationDetail(this, handle, flagKey, context, context.handle, type.code, default.toString())
        return EvaluationDetail.parse(Json.parseToJsonElement(answer).jsonObject, value)
    }

    /** Every flag's detail for [context] (remote mode: for the identified context); `null` values could not be served. */
    fun allFlags(context: Context): Map<String, EvaluationDetail<JsonElement?>> {
        val answer = Json.parseToJsonElement(Native.allFlags(this, handle, context, context.handle)).jsonObject
        return answer.mapValues { (_, detail) ->
            EvaluationDetail.parse(detail.jsonObject) { if (it is JsonNull) null else it }
        }
    }

    // ----- lifecycle ----------------------------------------------------------------------

    /** The client's state now. */
    fun status(): ClientStatus {
        val json = Json.parseToJsonElement(Native.status(this, handle)).jsonObject
        val events = json["events"]!!.jsonObject
        return ClientStatus(
            status = Status.valueOf(json.string("status")!!),
            reason = json.string("reason"),
            source = Source.valueOf(json.string("source")!!),
            version = json["version"]!!.jsonPrimitive.long,
            events = EventStats(
                dropped = events["dropped"]!!.jsonPrimitive.long,
                sent = events["sent"]!!.jsonPrimitive.long,
                queued = events["queued"]!!.jsonPrimitive.long,
                failedBatches = events["failed_batches"]!!.jsonPrimitive.long,
            ),
        )
    }

    /**
     * Suspends until the first data from the server arrives, the key is refused, or [timeout]
     * passes; returns the status then. Cached and bootstrap data are served meanwhile. No
     * thread is blocked: the coroutine wakes on a data change, or checks again after a short
     * delay.
     */
    suspend fun awaitInitialization(timeout: Duration = 5.seconds): Status {
        var status = status().status
        if (status != Status.INITIALIZING) return status
        val wake = Channel<Unit>(Channel.CONFLATED)
        val listener = ChangeListener { wake.trySend(Unit) }
        addChangeListener(listener)
        try {
            withTimeoutOrNull(timeout) {
                var pause = 2L
                while (true) {
                    status = status().status
                    if (status != Status.INITIALIZING) break
                    withTimeoutOrNull(pause) { wake.receive() }
                    pause = (pause * 2).coerceAtMost(50)
                }
            }
        } finally {
            removeChangeListener(listener)
        }
        return status().status
    }

    /** [awaitInitialization] for Java and other blocking callers: blocks this thread. */
    fun awaitInitializationBlocking(timeoutMillis: Long): Status {
        val json = Json.parseToJsonElement(Native.waitForInitialization(this, handle, timeoutMillis)).jsonObject
        return Status.valueOf(json.string("status")!!)
    }

    /**
     * Client and mobile keys: evaluates for [context] from now on, and waits (without blocking
     * the caller's thread) up to [timeout] for its values; returns whether they arrived. The
     * previous context's values are served meanwhile. Server keys evaluate each call's own
     * context: this only records it.
     */
    suspend fun identify(context: Context, timeout: Duration = 5.seconds): Boolean =
        withContext(Dispatchers.IO) { identifyBlocking(context, timeout.inWholeMilliseconds) }

    /** [identify] for Java and other blocking callers. */
    fun identifyBlocking(context: Context, timeoutMillis: Long): Boolean =
        Native.identify(this, handle, context, context.handle, timeoutMillis)

    /** Records a metric event (queued at once, sent in the background). */
    @JvmOverloads
    fun track(eventName: String, context: Context, value: Double? = null) {
        Native.track(this, handle, eventName, context, context.handle, value ?: 0.0, value != null)
    }

    /** Sends pending events now; returns whether all were delivered within [timeout]. */
    suspend fun flush(timeout: Duration = 5.seconds): Boolean =
        withContext(Dispatchers.IO) { flushBlocking(timeout.inWholeMilliseconds) }

    /** [flush] for Java and other blocking callers. */
    fun flushBlocking(timeoutMillis: Long): Boolean = Native.flush(this, handle, timeoutMillis)

    /**
     * Flushes pending events (up to 5 s), stops the background work and releases the native
     * client's thread, connection and listeners; the memory holding its flag data is released
     * when this object is garbage collected. Idempotent.
     */
    override fun close() {
        Native.clientClose(this, handle)
        dispatcher.listeners.clear()
    }

    // ----- changes ------------------------------------------------------------------------

    /** Calls [listener] on the client's background thread after each change of flag data. */
    fun addChangeListener(listener: ChangeListener) {
        dispatcher.listeners += listener
    }

    fun removeChangeListener(listener: ChangeListener) {
        dispatcher.listeners -= listener
    }

    /**
     * Changes of flag data as a cold [Flow]: each collector registers its own listener while it
     * collects. Changes are buffered, never dropped, for slow collectors.
     */
    val changes: Flow<FlagChange>
        get() = callbackFlow {
            val listener = ChangeListener { trySend(it) }
            addChangeListener(listener)
            awaitClose { removeChangeListener(listener) }
        }.buffer(Channel.UNLIMITED)

    /** Times [iterations] bool variations made natively, in nanoseconds (benchmark baseline). */
    internal fun nativeBoolVariationNanos(flagKey: String, context: Context, iterations: Long): Long =
        Native.benchmarkBoolVariation(this, handle, flagKey, context, context.handle, iterations)

    companion object {
        const val VERSION = "0.1.0"
    }
}

/**
 * Receives changes from the native client. Held by a JNI global reference (released on
 * close), so it must not refer to its client: an unclosed client can still be collected.
 */
internal class ChangeDispatcher {
    val listeners = CopyOnWriteArrayList<ChangeListener>()

    /** Called by the native library, on the client's thread. */
    @Suppress("unused")
    fun onNativeChange(flagKeysJson: String, version: Long) {
        val change = try {
            FlagChange(Json.parseToJsonElement(flagKeysJson).jsonArray.map { it.jsonPrimitive.content }, version)
        } catch (e: Exception) {
            logger.log(Level.WARNING, "vexil: unreadable change notification", e)
            return
        }
        for (listener in listeners) {
            try {
                listener.onChange(change)
            } catch (e: Throwable) {
                logger.log(Level.WARNING, "vexil: a change listener threw", e)
            }
        }
    }

    private companion object {
        val logger: Logger = Logger.getLogger("dev.vexil")
    }
}
