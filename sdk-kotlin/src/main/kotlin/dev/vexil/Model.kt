package dev.vexil

import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.booleanOrNull
import kotlinx.serialization.json.intOrNull
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.longOrNull

/** The type a variation call asks for. */
enum class FlagType(internal val code: Int) {
    BOOL(Native.BOOL), STRING(Native.STRING), NUMBER(Native.NUMBER), JSON(Native.JSON)
}

/** Where the data behind an evaluation came from. */
enum class Source {
    /** Live data from the server. */
    NETWORK,
    /** The last good data while disconnected, or a cache older than its maximum age. */
    STALE,
    /** Read from the cache file at start. */
    CACHE,
    /** The bootstrap file. */
    BOOTSTRAP,
    /** No data: the caller's default. */
    DEFAULTS,
}

/** Where a client stands. */
enum class Status { INITIALIZING, READY, STALE, OFFLINE, FAILED, CLOSED }

enum class ErrorKind { FLAG_NOT_FOUND, WRONG_TYPE, MALFORMED_FLAG, INVALID_CONTEXT, CLIENT_NOT_READY }

/** Why a value was served. */
data class EvaluationReason(
    val kind: Kind,
    /** [Kind.RULE_MATCH]: the rule's position and id. */
    val ruleIndex: Int? = null,
    val ruleId: String? = null,
    /** [Kind.PREREQUISITE_FAILED]: the prerequisite flag. */
    val prerequisiteKey: String? = null,
    /** [Kind.ERROR]: what went wrong (the default was served). */
    val errorKind: ErrorKind? = null,
) {
    enum class Kind { OFF, TARGET_MATCH, RULE_MATCH, FALLTHROUGH, PREREQUISITE_FAILED, ERROR }

    /** The reason as the conformance vectors write it: `{"kind": "RULE_MATCH", "rule_index": 0, …}`. */
    fun toJson(): JsonObject {
        val fields = linkedMapOf<String, JsonElement>("kind" to JsonPrimitive(kind.name))
        ruleIndex?.let { fields["rule_index"] = JsonPrimitive(it) }
        ruleId?.let { fields["rule_id"] = JsonPrimitive(it) }
        prerequisiteKey?.let { fields["prerequisite_key"] = JsonPrimitive(it) }
        errorKind?.let { fields["error_kind"] = JsonPrimitive(it.name) }
        return JsonObject(fields)
    }

    internal companion object {
        fun parse(json: JsonObject) = EvaluationReason(
            kind = Kind.valueOf(json.string("kind") ?: "ERROR"),
            ruleIndex = (json["rule_index"] as? JsonPrimitive)?.intOrNull,
            ruleId = json.string("rule_id"),
            prerequisiteKey = json.string("prerequisite_key"),
            errorKind = json.string("error_kind")?.let(ErrorKind::valueOf),
        )
    }
}

/** A variation with everything known about it. */
data class EvaluationDetail<T>(
    val value: T,
    /** The variation served; `null` when the default was returned. */
    val variationIndex: Int?,
    val reason: EvaluationReason,
    val inExperiment: Boolean,
    val experimentKey: String?,
    /** The flag's version (0 when unknown). */
    val flagVersion: Long,
    val source: Source,
    /** The environment version of the data (0 when none). */
    val version: Long,
) {
    internal companion object {
        fun <T> parse(json: JsonObject, value: (JsonElement) -> T) = EvaluationDetail(
            value = value(json["value"] ?: JsonNull),
            variationIndex = (json["variation"] as? JsonPrimitive)?.intOrNull,
            reason = EvaluationReason.parse(json["reason"]!!.jsonObject),
            inExperiment = json["in_experiment"]?.jsonPrimitive?.booleanOrNull ?: false,
            experimentKey = json.string("experiment_key"),
            flagVersion = json["flag_version"]?.jsonPrimitive?.longOrNull ?: 0,
            source = Source.valueOf(json.string("source") ?: "DEFAULTS"),
            version = json["version"]?.jsonPrimitive?.longOrNull ?: 0,
        )
    }
}

/** A change of flag data: the flags that may have changed and the new environment version. */
data class FlagChange(val flagKeys: List<String>, val version: Long)

/** Counters of the event pipeline. */
data class EventStats(val dropped: Long, val sent: Long, val queued: Long, val failedBatches: Long)

/** A snapshot of a client's state. */
data class ClientStatus(
    val status: Status,
    /** Why the client is [Status.STALE] or [Status.FAILED]. */
    val reason: String?,
    val source: Source,
    val version: Long,
    val events: EventStats,
)

/** Receives changes of flag data, on the client's background thread. */
fun interface ChangeListener {
    fun onChange(change: FlagChange)
}

internal fun JsonObject.string(name: String): String? =
    (this[name] as? JsonPrimitive)?.takeIf { it.isString }?.content
