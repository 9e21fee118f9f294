package dev.vexil

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.booleanOrNull
import kotlinx.serialization.json.doubleOrNull
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.DynamicContainer
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.TestFactory
import java.nio.file.Files

/**
 * Every case of every conformance/vectors file, through the public API: an offline client
 * bootstrapped with the file's ruleset (as conformance/run does), the typed call matching the
 * case's type, and a context built once with [Context.fromJson].
 */
class ConformanceVectorsTest {
    @TestFactory
    fun vectors(): List<DynamicContainer> = TestPaths.vectors.map { file ->
        val vectors = Json.parseToJsonElement(file.readText()).jsonObject
        val ruleset = JsonObject(mapOf(
            "flags" to (vectors["flags"] ?: JsonArray(emptyList())),
            "segments" to (vectors["segments"] ?: JsonArray(emptyList())),
        ))
        val bootstrap = Files.createTempFile("vexil-bootstrap-", ".json").toFile()
        bootstrap.deleteOnExit()
        bootstrap.writeText(ruleset.toString())
        val client by lazy {
            VexilClient("vxl-server-conformance") { offline = true; this.bootstrap = bootstrap.path }
        }
        DynamicContainer.dynamicContainer(file.name, vectors["cases"]!!.jsonArray.map { case ->
            val case = case.jsonObject
            DynamicTest.dynamicTest(case["name"]!!.jsonPrimitive.content) { check(client, case) }
        })
    }

    private fun check(client: VexilClient, case: JsonObject) {
        val flag = case["flag"]!!.jsonPrimitive.content
        val default = case["default"] ?: JsonNull
        val type = case["type"]?.jsonPrimitive?.content ?: when {
            default is JsonPrimitive && default.isString -> "string"
            default is JsonPrimitive && default.booleanOrNull != null -> "bool"
            default is JsonPrimitive && default.doubleOrNull != null -> "number"
            else -> "json"
        }
        val contextJson = case["context"]!!
        val detail: EvaluationDetail<JsonElement> = try {
            Context.fromJson(contextJson).use { context -> typedDetail(client, flag, context, type, default) }
        } catch (invalid: InvalidContextException) {
            // A context the SDK refuses to build is evaluated from its JSON: the engine orders
            // the flag's own errors before INVALID_CONTEXT.
            client.variationDetail(flag, contextJson.toString(), FlagType.valueOf(type.uppercase()), default)
        }
        val expect = case["expect"]!!.jsonObject
        val got = mapOf(
            "value" to detail.value,
            "variation" to (detail.variationIndex?.let(::JsonPrimitive) ?: JsonNull),
            "reason" to detail.reason.toJson(),
            "in_experiment" to JsonPrimitive(detail.inExperiment),
        )
        for ((field, value) in got) {
            assertTrue(sameJson(value, expect[field])) { "$field: got $value, expected ${expect[field]}" }
        }
    }

    private fun typedDetail(
        client: VexilClient, flag: String, context: Context, type: String, default: JsonElement,
    ): EvaluationDetail<JsonElement> {
        val primitive = default as? JsonPrimitive
        fun <T> EvaluationDetail<T>.asJson(convert: (T) -> JsonElement) = EvaluationDetail(
            convert(value), variationIndex, reason, inExperiment, experimentKey, flagVersion, source, version,
        )
        return when {
            type == "bool" && primitive?.booleanOrNull != null ->
                client.boolVariationDetail(flag, context, primitive.booleanOrNull!!).asJson(::JsonPrimitive)
            type == "string" && primitive?.isString == true ->
                client.stringVariationDetail(flag, context, primitive.content).asJson(::JsonPrimitive)
            type == "number" && primitive != null && !primitive.isString && primitive.doubleOrNull != null ->
                client.doubleVariationDetail(flag, context, primitive.doubleOrNull!!).asJson(::JsonPrimitive)
            type == "json" -> client.jsonVariationDetail(flag, context, default)
            else -> client.variationDetail(flag, context, FlagType.valueOf(type.uppercase()), default)
        }
    }
}
