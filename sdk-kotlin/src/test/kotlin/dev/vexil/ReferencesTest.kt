package dev.vexil

import kotlinx.serialization.json.JsonPrimitive
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import java.nio.file.Files

/**
 * JNI references: calls in long loops must not accumulate local references (the JVM's local
 * table would overflow; `-Xcheck:jni`, set in the pom, reports misuse), and handles of
 * unreachable objects are freed.
 */
class ReferencesTest {
    @Test
    fun `a million calls returning Java objects do not leak local references`() {
        val ruleset = Files.createTempFile("vexil-", ".json").toFile()
        ruleset.writeText(
            """{"flags": [{"key": "greeting", "kind": "string", "variations": ["hello", "hi"], "on": true,
                "fallthrough": {"variation": 1}}], "segments": []}""",
        )
        VexilClient("vxl-server-x") { offline = true; bootstrap = ruleset.path }.use { client ->
            context("user", "alice").use { alice ->
                var served = 0
                repeat(1_000_000) {
                    if (client.stringVariation("greeting", alice, "d") == "hi") served++
                }
                assertEquals(1_000_000, served)
                repeat(20_000) {
                    assertEquals(JsonPrimitive("hi"), client.jsonVariation("greeting", alice, JsonPrimitive("d")))
                    assertEquals(1, client.allFlags(alice).size)
                    assertEquals("hi", client.stringVariationDetail("greeting", alice, "d").value)
                }
            }
        }
        ruleset.delete()
    }

    @Test
    fun `contexts that are never closed are freed once unreachable`() {
        val before = NativeCleaner.pendingCount()
        repeat(20_000) { context("user", "u$it") { attr("n", it) } }
        var waited = 0
        while (NativeCleaner.pendingCount() > before + 1_000 && waited < 100) {
            System.gc()
            Thread.sleep(50)
            waited++
        }
        assertTrue(NativeCleaner.pendingCount() <= before + 1_000) { "still pending: ${NativeCleaner.pendingCount()}" }
    }
}
