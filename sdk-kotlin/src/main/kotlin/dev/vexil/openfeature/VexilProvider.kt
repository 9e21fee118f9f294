package dev.vexil.openfeature

import dev.openfeature.sdk.ErrorCode
import dev.openfeature.sdk.EvaluationContext
import dev.openfeature.sdk.EventProvider
import dev.openfeature.sdk.ImmutableMetadata
import dev.openfeature.sdk.Metadata
import dev.openfeature.sdk.MutableStructure
import dev.openfeature.sdk.ProviderEvaluation
import dev.openfeature.sdk.ProviderEventDetails
import dev.openfeature.sdk.Reason
import dev.openfeature.sdk.TrackingEventDetails
import dev.openfeature.sdk.Value
import dev.vexil.ChangeListener
import dev.vexil.Context
import dev.vexil.EvaluationDetail
import dev.vexil.EvaluationReason
import dev.vexil.FlagType
import dev.vexil.Source
import dev.vexil.Status
import dev.vexil.VexilClient
import dev.vexil.VexilOptions
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.booleanOrNull
import kotlinx.serialization.json.doubleOrNull
import kotlinx.serialization.json.longOrNull

/**
 * Vexil as a provider of OpenFeature's Java SDK (`dev.openfeature:sdk`), for Java and
 * Kotlin. Already on OpenFeature? One line changes:
 *
 * ```
 * OpenFeatureAPI.getInstance().setProviderAndWait(VexilProvider("vxl-server-…", VexilOptions().apply { endpoint = "…" }))
 * ```
 *
 * Each call's evaluation context becomes a Vexil context, evaluated in this process (a
 * server key): the targeting key is the key, the attribute `kind` the kind (`user` by
 * default), other attributes attributes (instants as RFC 3339). A multi-kind context is
 * `kind = "multi"` with one structure per kind, each with its `targetingKey`. Reasons are
 * OpenFeature's (TARGETING_MATCH, DEFAULT, SPLIT in an experiment, DISABLED; CACHED and STALE
 * for values not fresh from the server), with Vexil's own in the flag metadata. The client's
 * changes and status become the provider's events.
 */
class VexilProvider @JvmOverloads constructor(
    /** The client underneath, for what OpenFeature has no word for (`flushBlocking`, `allFlags`). */
    val client: VexilClient,
    private val initTimeoutMillis: Long = 5_000,
) : EventProvider() {

    constructor(sdkKey: String, options: VexilOptions) : this(VexilClient(sdkKey, options))

    @Volatile private var watcher: Thread? = null
    private val changes = ChangeListener { change ->
        emitProviderConfigurationChanged(ProviderEventDetails.builder().flagsChanged(change.flagKeys).build())
    }

    override fun getMetadata(): Metadata = Metadata { "Vexil" }

    /** Waits for the first data (or the cache's, or bootstrap), then announces changes and status. */
    override fun initialize(evaluationContext: EvaluationContext?) {
        val status = client.awaitInitializationBlocking(initTimeoutMillis)
        val now = client.status()
        if (status == Status.FAILED) throw IllegalStateException("vexil: ${now.reason ?: "the SDK key was refused"}")
        if (status == Status.INITIALIZING && now.source == Source.DEFAULTS) {
            throw IllegalStateException("vexil: no flag data within $initTimeoutMillis ms")
        }
        client.addChangeListener(changes)
        watcher = Thread({ watchStatus(status) }, "vexil-openfeature").apply {
            isDaemon = true
            start()
        }
    }

    private fun watchStatus(initial: Status) {
        var previous = initial
        try {
            while (!Thread.currentThread().isInterrupted) {
                Thread.sleep(STATUS_INTERVAL_MILLIS)
                val now = client.status()
                if (now.status == previous) continue
                val reason = now.reason
                when (now.status) {
                    Status.STALE -> emitProviderStale(ProviderEventDetails.builder().message(reason).build())
                    Status.FAILED -> emitProviderError(
                        ProviderEventDetails.builder().message(reason).errorCode(ErrorCode.GENERAL).build(),
                    )
                    Status.READY -> emitProviderReady(ProviderEventDetails.builder().build())
                    else -> {}
                }
                previous = now.status
            }
        } catch (_: InterruptedException) {
            // shutdown
        }
    }

    /** Stops the events, flushes and closes the client. */
    override fun shutdown() {
        watcher?.interrupt()
        watcher?.join(2_000)
        client.removeChangeListener(changes)
        client.close()
        super.shutdown()
    }

    override fun getBooleanEvaluation(key: String, defaultValue: Boolean, ctx: EvaluationContext?): ProviderEvaluation<Boolean> =
        resolve(key, ctx, FlagType.BOOL, JsonPrimitive(defaultValue), defaultValue) { (it as? JsonPrimitive)?.booleanOrNull }

    override fun getStringEvaluation(key: String, defaultValue: String, ctx: EvaluationContext?): ProviderEvaluation<String> =
        resolve(key, ctx, FlagType.STRING, JsonPrimitive(defaultValue), defaultValue) {
            (it as? JsonPrimitive)?.takeIf { value -> value.isString }?.content
        }

    override fun getIntegerEvaluation(key: String, defaultValue: Int, ctx: EvaluationContext?): ProviderEvaluation<Int> =
        resolve(key, ctx, FlagType.NUMBER, JsonPrimitive(defaultValue), defaultValue) { value ->
            val number = (value as? JsonPrimitive)?.doubleOrNull
            number?.takeIf { it == Math.rint(it) && it >= Int.MIN_VALUE && it <= Int.MAX_VALUE }?.toInt()
        }

    override fun getDoubleEvaluation(key: String, defaultValue: Double, ctx: EvaluationContext?): ProviderEvaluation<Double> =
        resolve(key, ctx, FlagType.NUMBER, JsonPrimitive(defaultValue), defaultValue) { (it as? JsonPrimitive)?.doubleOrNull }

    override fun getObjectEvaluation(key: String, defaultValue: Value, ctx: EvaluationContext?): ProviderEvaluation<Value> =
        resolve(key, ctx, FlagType.JSON, JsonNull, defaultValue) { openFeatureValue(it) }

    /** Sends a Vexil track event for the context, with the details' value. */
    override fun track(eventName: String, context: EvaluationContext?, details: TrackingEventDetails?) {
        val json = contextJson(context) ?: return
        val vexilContext = try {
            Context.fromJson(json.toString())
        } catch (_: Exception) {
            return
        }
        vexilContext.use { client.track(eventName, it, details?.value?.orElse(null)?.toDouble()) }
    }

    private fun <T> resolve(
        key: String,
        ctx: EvaluationContext?,
        type: FlagType,
        defaultJson: JsonElement,
        defaultValue: T,
        convert: (JsonElement) -> T?,
    ): ProviderEvaluation<T> {
        val json = contextJson(ctx) ?: return failure(defaultValue, ErrorCode.TARGETING_KEY_MISSING, "the evaluation context has no targeting key")
        val detail = client.variationDetail(key, json.toString(), type, defaultJson)
        val metadata = metadata(detail)
        if (detail.reason.kind == EvaluationReason.Kind.ERROR) {
            val code = when (detail.reason.errorKind) {
                dev.vexil.ErrorKind.FLAG_NOT_FOUND -> ErrorCode.FLAG_NOT_FOUND
                dev.vexil.ErrorKind.WRONG_TYPE -> ErrorCode.TYPE_MISMATCH
                dev.vexil.ErrorKind.MALFORMED_FLAG -> ErrorCode.PARSE_ERROR
                dev.vexil.ErrorKind.INVALID_CONTEXT -> ErrorCode.INVALID_CONTEXT
                dev.vexil.ErrorKind.CLIENT_NOT_READY -> ErrorCode.PROVIDER_NOT_READY
                null -> ErrorCode.GENERAL
            }
            return failure(defaultValue, code, detail.reason.errorKind?.name ?: "ERROR", metadata)
        }
        val value = convert(detail.value) ?: return failure(defaultValue, ErrorCode.TYPE_MISMATCH, "the flag's value is not of the type asked for", metadata)
        val reason = when {
            detail.source == Source.CACHE -> Reason.CACHED.name
            detail.source == Source.STALE -> "STALE"
            detail.reason.kind == EvaluationReason.Kind.TARGET_MATCH || detail.reason.kind == EvaluationReason.Kind.RULE_MATCH -> Reason.TARGETING_MATCH.name
            detail.reason.kind == EvaluationReason.Kind.FALLTHROUGH && detail.inExperiment -> Reason.SPLIT.name
            detail.reason.kind == EvaluationReason.Kind.FALLTHROUGH -> Reason.DEFAULT.name
            else -> Reason.DISABLED.name
        }
        return ProviderEvaluation.builder<T>().value(value).reason(reason)
            .variant(detail.variationIndex?.toString()).flagMetadata(metadata).build()
    }

    private fun <T> failure(value: T, code: ErrorCode, message: String, metadata: ImmutableMetadata? = null): ProviderEvaluation<T> =
        ProviderEvaluation.builder<T>().value(value).reason(Reason.ERROR.name).errorCode(code).errorMessage(message)
            .flagMetadata(metadata ?: ImmutableMetadata.builder().build()).build()

    private fun metadata(detail: EvaluationDetail<JsonElement>): ImmutableMetadata {
        val builder = ImmutableMetadata.builder()
            .addString("vexilReason", detail.reason.kind.name)
            .addBoolean("inExperiment", detail.inExperiment)
            .addLong("flagVersion", detail.flagVersion)
            .addString("source", detail.source.name)
        detail.reason.ruleIndex?.let { builder.addInteger("ruleIndex", it) }
        detail.reason.ruleId?.let { builder.addString("ruleId", it) }
        detail.reason.prerequisiteKey?.let { builder.addString("prerequisiteKey", it) }
        detail.experimentKey?.let { builder.addString("experimentKey", it) }
        return builder.build()
    }

    companion object {
        /** How often the provider looks at the client's status to announce STALE and READY. */
        private const val STATUS_INTERVAL_MILLIS = 250L

        /**
         * Vexil's context (canonical JSON) for an OpenFeature evaluation context, or null when
         * it has no key (see the class documentation).
         */
        @JvmStatic
        fun contextJson(context: EvaluationContext?): JsonObject? {
            if (context == null) return null
            val fields = context.asMap()
            if (fields["kind"]?.takeIf { it.isString }?.asString() == "multi") {
                val contexts = fields.filterKeys { it != "kind" && it != EvaluationContext.TARGETING_KEY }.map { (kind, value) ->
                    if (!value.isStructure) return null
                    val single = single(value.asStructure().asMap(), null) ?: return null
                    JsonObject(single + ("kind" to JsonPrimitive(kind)))
                }
                if (contexts.isEmpty()) return null
                return JsonObject(mapOf("kind" to JsonPrimitive("multi"), "contexts" to JsonArray(contexts)))
            }
            return single(fields, context.targetingKey)?.let(::JsonObject)
        }

        private fun single(fields: Map<String, Value>, targetingKey: String?): Map<String, JsonElement>? {
            val keyField = if (fields.containsKey(EvaluationContext.TARGETING_KEY)) EvaluationContext.TARGETING_KEY else "key"
            val key = targetingKey?.takeIf { it.isNotEmpty() }
                ?: fields[keyField]?.takeIf { it.isString }?.asString()?.takeIf { it.isNotEmpty() }
                ?: return null
            val attributes = fields.filterKeys { it != keyField && it != EvaluationContext.TARGETING_KEY && it != "kind" }
                .mapValues { (_, value) -> json(value) }
            val out = linkedMapOf<String, JsonElement>("key" to JsonPrimitive(key), "attributes" to JsonObject(attributes))
            fields["kind"]?.let { out["kind"] = json(it) }
            return out
        }

        private fun json(value: Value): JsonElement = when {
            value.isNull -> JsonNull
            value.isBoolean -> JsonPrimitive(value.asBoolean())
            value.isString -> JsonPrimitive(value.asString())
            value.isNumber -> when (val number = value.asObject()) {
                is Int, is Long, is Short, is Byte -> JsonPrimitive((number as Number).toLong())
                else -> JsonPrimitive(value.asDouble())
            }
            value.isInstant -> JsonPrimitive(value.asInstant().toString())
            value.isList -> JsonArray(value.asList().map(::json))
            value.isStructure -> JsonObject(value.asStructure().asMap().mapValues { (_, item) -> json(item) })
            else -> JsonNull
        }

        private fun openFeatureValue(json: JsonElement): Value = when (json) {
            is JsonNull -> Value()
            is JsonPrimitive -> when {
                json.isString -> Value(json.content)
                json.booleanOrNull != null -> Value(json.booleanOrNull!!)
                json.longOrNull != null && json.longOrNull!! in Int.MIN_VALUE..Int.MAX_VALUE -> Value(json.longOrNull!!.toInt())
                else -> Value(json.doubleOrNull ?: Double.NaN)
            }
            is JsonArray -> Value(json.map(::openFeatureValue))
            is JsonObject -> Value(MutableStructure(json.mapValues { (_, item) -> openFeatureValue(item) }))
        }
    }
}
