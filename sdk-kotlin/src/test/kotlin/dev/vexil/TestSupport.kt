package dev.vexil

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.booleanOrNull
import kotlinx.serialization.json.doubleOrNull
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import java.io.File
import java.net.HttpURLConnection
import java.net.ServerSocket
import java.net.URI
import java.nio.file.Files
import java.nio.file.Path

/** Paths given by the build (see pom.xml and ci.sh). */
object TestPaths {
    val repoRoot: File = File(System.getProperty("vexil.repo.root") ?: "..").canonicalFile

    val binDir: File
        get() {
            val configured = System.getProperty("vexil.bin.dir")?.takeIf { it.isNotBlank() }
                ?: System.getenv("CARGO_TARGET_DIR")?.let { "$it/debug" }
                ?: File(repoRoot, "target/debug").path
            return File(configured)
        }

    val vectors: List<File> =
        File(repoRoot, "conformance/vectors").listFiles { f -> f.name.endsWith(".json") }!!.sortedBy { it.name }
}

/** JSON equality with numbers compared by value (1 == 1.0) and booleans kept apart from numbers. */
fun sameJson(a: JsonElement?, b: JsonElement?): Boolean {
    val left = a ?: JsonNull
    val right = b ?: JsonNull
    return when {
        left is JsonNull || right is JsonNull -> left is JsonNull && right is JsonNull
        left is JsonPrimitive && right is JsonPrimitive -> when {
            left.isString || right.isString -> left.isString && right.isString && left.content == right.content
            left.booleanOrNull != null || right.booleanOrNull != null -> left.booleanOrNull == right.booleanOrNull
            else -> left.doubleOrNull == right.doubleOrNull
        }
        left is JsonArray && right is JsonArray -> left.size == right.size && left.indices.all { sameJson(left[it], right[it]) }
        left is JsonObject && right is JsonObject -> left.keys == right.keys && left.keys.all { sameJson(left[it], right[it]) }
        else -> false
    }
}

fun freePort(): Int = ServerSocket(0).use { it.localPort }

/** A vexil-server on free ports with its own SQLite data directory, as conformance/run starts it. */
class TestServer : AutoCloseable {
    val workDir: Path = Files.createTempDirectory("vexil-kotlin-server")
    private val dataDir = workDir.resolve("server-data")
    private val port = freePort()
    private val httpPort = freePort()
    private var process: Process? = null
    val endpoint = "http://127.0.0.1:$port"
    val token: String
    private val keys: JsonObject

    init {
        start()
        val credentials = Json.parseToJsonElement(dataDir.resolve("credentials.json").toFile().readText()).jsonObject
        token = credentials["admin_token"]!!.jsonObject["token"]!!.jsonPrimitive.content
        keys = credentials["sdk_keys"]!!.jsonObject["production"]!!.jsonObject
    }

    fun key(kind: String): String = keys[kind]!!.jsonPrimitive.content

    fun start() {
        process = ProcessBuilder(
            File(TestPaths.binDir, "vexil-server").path,
            "--listen", "127.0.0.1:$port", "--http-listen", "127.0.0.1:$httpPort",
            "--data-dir", dataDir.toString(), "--heartbeat-interval", "0.5", "--version-check-interval", "0.5",
        ).redirectOutput(ProcessBuilder.Redirect.DISCARD).redirectError(ProcessBuilder.Redirect.DISCARD).start()
        val deadline = System.nanoTime() + 30_000_000_000L
        while (System.nanoTime() < deadline) {
            if (httpGet("/readyz") != null) return
            Thread.sleep(50)
        }
        throw IllegalStateException("vexil-server did not become ready")
    }

    private fun httpGet(path: String): String? = try {
        val connection = URI("http://127.0.0.1:$httpPort$path").toURL().openConnection() as HttpURLConnection
        connection.connectTimeout = 1000
        connection.readTimeout = 5000
        try {
            if (connection.responseCode == 200) connection.inputStream.bufferedReader().readText() else null
        } finally {
            connection.disconnect()
        }
    } catch (_: Exception) {
        null
    }

    /** Runs the admin CLI against this server. */
    fun cli(vararg args: String) {
        val builder = ProcessBuilder(File(TestPaths.binDir, "vexil").path, *args).redirectErrorStream(true)
        builder.environment().putAll(mapOf("VEXIL_SERVER" to endpoint, "VEXIL_TOKEN" to token, "VEXIL_ENVIRONMENT" to "production"))
        val process = builder.start()
        val output = process.inputStream.bufferedReader().readText()
        check(process.waitFor() == 0) { "vexil ${args.joinToString(" ")} failed: $output" }
    }

    fun importFlags(flagsJson: String) {
        val file = workDir.resolve("import-${System.nanoTime()}.json")
        file.toFile().writeText("""{"flags": $flagsJson, "segments": []}""")
        cli("import", file.toString())
    }

    /** A Prometheus metric of the server, 0 when absent. */
    fun metric(lineStart: String): Double =
        httpGet("/metrics")?.lineSequence()?.firstOrNull { it.startsWith("$lineStart ") }
            ?.substringAfterLast(' ')?.toDouble() ?: 0.0

    /** Kills the process, as a crash would; [start] starts it again on the same ports and data. */
    fun kill() {
        process?.destroyForcibly()?.waitFor()
        process = null
    }

    override fun close() {
        kill()
        workDir.toFile().deleteRecursively()
    }
}

const val BOOL_ON = """{"key": "checkout", "kind": "bool", "variations": [false, true], "on": true,
    "off_variation": 0, "fallthrough": {"variation": 1}}"""
