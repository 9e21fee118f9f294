// The Kotlin SDK's testee: answers the commands of conformance/PROTOCOL.md on stdin/stdout
// through the public API of dev.vexil only.
package dev.vexil.testee

import dev.vexil.ClientStatus
import dev.vexil.Context
import dev.vexil.EvaluationDetail
import dev.vexil.FlagType
import dev.vexil.VexilClient
import dev.vexil.VexilException
import kotlinx.coroutines.runBlocking
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.booleanOrNull
import kotlinx.serialization.json.buildJsonObject
import kotlinx.serialization.json.doubleOrNull
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.longOrNull
import kotlinx.serialization.json.put
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.time.Duration.Companion.milliseconds

/** A command the testee cannot perform: answered with `ok: false`. */
class CommandError(message: String) : Exception(message)

class Testee {
    private var client: VexilClient? = null
    private var changes = LinkedBlockingQueue<List<String>>()

    private fun client() = client ?: throw CommandError("no client: send `create` first")

    private fun JsonObject.string(name: String): String? = (this[name] as? JsonPrimitive)?.takeIf { it.isString }?.content
    private fun JsonObject.millis(name: String, default: Long) = (this[name] as? JsonPrimitive)?.longOrNull ?: default
    private fun JsonObject.required(name: String) = string(name) ?: throw CommandError("$name: required")

    private fun context(command: JsonObject): Context = Context.fromJson(command["context"] ?: JsonNull)

    private fun type(command: JsonObject, default: JsonElement): FlagType = when (command.string("type")) {
        "bool" -> FlagType.BOOL
        "string" -> FlagType.STRING
        "number" -> FlagType.NUMBER
        "json" -> FlagType.JSON
        null -> when {
            default is JsonPrimitive && default.isString -> FlagType.STRING
            default is JsonPrimitive && default.booleanOrNull != null -> FlagType.BOOL
            default is JsonPrimitive && default.doubleOrNull != null -> FlagType.NUMBER
            else -> FlagType.JSON
        }
        else -> throw CommandError("type: unknown ${command.string("type")}")
    }

    private fun detail(detail: EvaluationDetail<out JsonElement?>, withData: Boolean) = buildJsonObject {
        put("value", detail.value ?: JsonNull)
        put("variation", detail.variationIndex)
        put("reason", detail.reason.toJson())
        put("in_experiment", detail.inExperiment)
        if (withData) {
            put("source", detail.source.name)
            put("version", detail.version)
        }
    }

    fun handle(command: JsonObject): JsonObject = when (val name = command.string("cmd") ?: throw CommandError("cmd: required")) {
        "create" -> {
            client?.close()
            client = null
            val key = command.required("sdk_key")
            val initial = command["context"]?.takeIf { it !is JsonNull }?.let { context(command) }
            val created = VexilClient(key) {
                endpoint = command.string("endpoint")
                cacheDir = command.string("cache_dir")
                bootstrap = command.string("bootstrap")
                offline = (command["offline"] as? JsonPrimitive)?.booleanOrNull == true
                context = initial
                initialBackoffMillis = 100
                maxBackoffMillis = 500
                streamTimeoutMillis = 5_000
                flushIntervalMillis = command.millis("flush_interval_ms", 5_000)
                privateAttributes = (command["private_attributes"] as? JsonArray)?.map { it.jsonPrimitive.content }
                allAttributesPrivate = (command["all_attributes_private"] as? JsonPrimitive)?.booleanOrNull
            }
            initial?.close()
            val queue = LinkedBlockingQueue<List<String>>()
            created.addChangeListener { queue += it.flagKeys }
            changes = queue
            client = created
            JsonObject(emptyMap())
        }
        "wait_init" -> {
            val status = runBlocking { client().awaitInitialization(command.millis("timeout_ms", 5_000).milliseconds) }
            buildJsonObject { put("status", status.name) }
        }
        "evaluate" -> {
            val default = command["default"] ?: JsonNull
            val answer = client().variationDetail(
                command.required("flag"), (command["context"] ?: JsonNull).toString(), type(command, default), default,
            )
            detail(answer, withData = true)
        }
        "evaluate_all" -> {
            val flags = context(command).use { client().allFlags(it) }
            buildJsonObject { put("flags", JsonObject(flags.mapValues { detail(it.value, withData = false) })) }
        }
        "identify" -> {
            val arrived = context(command).use { runBlocking { client().identify(it, command.millis("timeout_ms", 5_000).milliseconds) } }
            buildJsonObject { put("arrived", arrived) }
        }
        "track" -> {
            val value = (command["value"] as? JsonPrimitive)?.doubleOrNull
            context(command).use { client().track(command.required("name"), it, value) }
            JsonObject(emptyMap())
        }
        "flush" -> buildJsonObject { put("delivered", client().flushBlocking(command.millis("timeout_ms", 5_000))) }
        "wait_change" -> {
            client()
            val wanted = command.string("flag")
            val deadline = System.nanoTime() + command.millis("timeout_ms", 5_000) * 1_000_000
            var found: List<String>? = null
            while (found == null) {
                val left = deadline - System.nanoTime()
                val keys = changes.poll(left.coerceAtLeast(0), TimeUnit.NANOSECONDS) ?: break
                if (wanted == null || wanted in keys) found = keys
            }
            buildJsonObject {
                put("changed", found != null)
                put("flag_keys", Json.parseToJsonElement(Json.encodeToString(found ?: emptyList())))
            }
        }
        "status" -> status(client().status())
        "close" -> {
            client?.close()
            client = null
            JsonObject(emptyMap())
        }
        else -> throw CommandError("cmd: unknown command \"$name\"")
    }

    private fun status(status: ClientStatus) = buildJsonObject {
        put("status", status.status.name)
        put("source", status.source.name)
        put("version", status.version)
        put("events", buildJsonObject {
            put("dropped", status.events.dropped)
            put("sent", status.events.sent)
            put("queued", status.events.queued)
        })
    }

    fun close() {
        client?.close()
        client = null
    }
}

fun main() {
    val testee = Testee()
    val out = System.out
    while (true) {
        val line = readlnOrNull() ?: break
        if (line.isBlank()) continue
        val answer = try {
            val command = Json.parseToJsonElement(line).jsonObject
            val id = command["id"] ?: JsonNull
            try {
                JsonObject(testee.handle(command) + mapOf("id" to id, "ok" to JsonPrimitive(true)))
            } catch (e: CommandError) {
                failure(id, e.message)
            } catch (e: VexilException) {
                failure(id, e.message)
            }
        } catch (e: IllegalArgumentException) {
            failure(JsonNull, "not JSON: ${e.message}")
        }
        out.println(answer.toString())
        out.flush()
    }
    testee.close()
}

private fun failure(id: JsonElement, message: String?) = buildJsonObject {
    put("id", id)
    put("ok", false)
    put("error", message ?: "error")
}
