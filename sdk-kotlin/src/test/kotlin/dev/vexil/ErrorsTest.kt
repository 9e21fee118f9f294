package dev.vexil

import kotlinx.serialization.json.JsonPrimitive
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import java.nio.file.Files

class ErrorsTest {
    private fun offlineClient() = VexilClient("vxl-server-offline") { offline = true }

    @Test
    fun `an invalid key names the key`() {
        val error = assertThrows<InvalidConfigException> { VexilClient("not-a-key") }
        assertTrue(error.message!!.startsWith("sdkKey:")) { error.message }
    }

    @Test
    fun `an invalid endpoint names the endpoint`() {
        val error = assertThrows<InvalidConfigException> { VexilClient("vxl-server-x") { endpoint = "not a url" } }
        assertTrue(error.message!!.startsWith("endpoint:")) { error.message }
    }

    @Test
    fun `invalid option values name the option`() {
        val capacity = assertThrows<InvalidConfigException> { VexilClient("vxl-server-x") { eventCapacity = 0 } }
        assertTrue(capacity.message!!.startsWith("eventCapacity:")) { capacity.message }
        val timeout = assertThrows<InvalidConfigException> { VexilClient("vxl-server-x") { connectTimeoutMillis = -5 } }
        assertTrue(timeout.message!!.startsWith("connectTimeoutMillis:")) { timeout.message }
    }

    @Test
    fun `invalid contexts are refused with the reason`() {
        val noKey = assertThrows<InvalidContextException> { Context.fromJson("""{"kind": "user"}""") }
        assertTrue(noKey.message!!.contains("key")) { noKey.message }
        val badKind = assertThrows<InvalidContextException> { context("kind", "x") }
        assertTrue(badKind.message!!.contains("kind")) { badKind.message }
        val duplicate = assertThrows<InvalidContextException> {
            multiContext { context("user", "a"); context("user", "b") }
        }
        assertTrue(duplicate.message!!.contains("more than once")) { duplicate.message }
        assertThrows<InvalidContextException> { Context.fromJson("{not json") }
        // An invalid initial context of the options is refused too.
        val initial = assertThrows<InvalidContextException> {
            VexilClient("vxl-mobile-x") { offline = true; context = Context.fromJson("""{"kind": "user", "key": ""}""") }
        }
        assertTrue(initial.message!!.contains("key")) { initial.message }
    }

    @Test
    fun `a closed context cannot be used, a closed client answers defaults`() {
        val client = offlineClient()
        val alice = context("user", "alice")
        alice.close()
        alice.close() // idempotent
        assertThrows<ClosedException> { client.boolVariation("f", alice, true) }
        client.close()
        context("user", "bob").use { bob ->
            assertTrue(client.boolVariation("f", bob, true))
            assertEquals("d", client.stringVariation("f", bob, "d"))
            assertEquals(2.5, client.doubleVariation("f", bob, 2.5))
            assertEquals(JsonPrimitive(1), client.jsonVariation("f", bob, JsonPrimitive(1)))
            val detail = client.boolVariationDetail("f", bob, true)
            assertEquals(ErrorKind.CLIENT_NOT_READY, detail.reason.errorKind)
            assertEquals(Status.CLOSED, client.status().status)
            assertFalse(client.identifyBlocking(bob, 10))
            client.track("e", bob) // does nothing
            client.close() // idempotent
        }
    }

    @Test
    fun `evaluation never throws for a missing flag or a wrong type`() {
        val ruleset = Files.createTempFile("vexil-", ".json").toFile()
        ruleset.writeText("""{"flags": [$BOOL_ON], "segments": []}""")
        VexilClient("vxl-server-x") { offline = true; bootstrap = ruleset.path }.use { client ->
            context("user", "alice").use { alice ->
                assertEquals(Status.OFFLINE, client.awaitInitializationBlocking(100))
                val missing = client.stringVariationDetail("nope", alice, "d")
                assertEquals("d", missing.value)
                assertEquals(ErrorKind.FLAG_NOT_FOUND, missing.reason.errorKind)
                val wrongType = client.doubleVariationDetail("checkout", alice, 3.0)
                assertEquals(3.0, wrongType.value)
                assertEquals(ErrorKind.WRONG_TYPE, wrongType.reason.errorKind)
                val served = client.boolVariationDetail("checkout", alice, false)
                assertTrue(served.value)
                assertEquals(Source.BOOTSTRAP, served.source)
            }
        }
        ruleset.delete()
    }

    @Test
    fun `a Rust panic becomes a NativeException and the JVM goes on`() {
        NativeLibrary.ensureLoaded()
        repeat(3) {
            val error = assertThrows<NativeException> { Native.panicForTest() }
            assertTrue(error.message!!.contains("deliberate panic")) { error.message }
        }
        offlineClient().use { client -> context("user", "a").use { assertFalse(client.boolVariation("f", it, false)) } }
    }
}
