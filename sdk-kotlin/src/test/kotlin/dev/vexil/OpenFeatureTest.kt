package dev.vexil

import dev.openfeature.sdk.ErrorCode
import dev.openfeature.sdk.EvaluationContext
import dev.openfeature.sdk.ImmutableContext
import dev.openfeature.sdk.ImmutableStructure
import dev.openfeature.sdk.MutableTrackingEventDetails
import dev.openfeature.sdk.OpenFeatureAPI
import dev.openfeature.sdk.ProviderState
import dev.openfeature.sdk.Value
import dev.vexil.openfeature.VexilProvider
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.time.Instant
import java.util.concurrent.CopyOnWriteArrayList

/** `dev.vexil.openfeature.VexilProvider` under OpenFeature's Java SDK against a real server. */
class OpenFeatureTest {
    private lateinit var server: TestServer
    private val api = OpenFeatureAPI.getInstance()
    private val alice = ImmutableContext("alice", mapOf("plan" to Value("free")))

    @BeforeEach
    fun start() {
        server = TestServer()
    }

    @AfterEach
    fun stop() {
        api.shutdown()
        server.close()
    }

    private fun waitFor(what: String, check: () -> Boolean) {
        val deadline = System.nanoTime() + 15_000_000_000L
        while (!check()) {
            check(System.nanoTime() < deadline) { "timed out waiting for $what" }
            Thread.sleep(20)
        }
    }

    @Test
    fun `the context convention`() {
        val at = Instant.parse("2026-01-02T03:04:05Z")
        val single = VexilProvider.contextJson(ImmutableContext("u1", mapOf("kind" to Value("org"), "since" to Value(at))))
        assertEquals("""{"key":"u1","attributes":{"since":"2026-01-02T03:04:05Z"},"kind":"org"}""", single.toString())
        val multi = VexilProvider.contextJson(
            ImmutableContext(
                mapOf(
                    "kind" to Value("multi"),
                    "user" to Value(ImmutableStructure(mapOf(EvaluationContext.TARGETING_KEY to Value("u1")))),
                ),
            ),
        )
        assertEquals("""{"kind":"multi","contexts":[{"key":"u1","attributes":{},"kind":"user"}]}""", multi.toString())
        assertNull(VexilProvider.contextJson(ImmutableContext(mapOf("plan" to Value("pro")))))
    }

    @Test
    fun `the provider serves through the OpenFeature SDK`() {
        server.importFlags(
            """[
            {"key": "checkout", "kind": "bool", "variations": [false, true], "on": true, "off_variation": 0,
             "fallthrough": {"variation": 1},
             "rules": [{"id": "bob", "clauses": [{"attribute": "key", "op": "in", "values": ["bob"]}], "serve": {"variation": 0}}]},
            {"key": "banner", "kind": "string", "variations": ["blue", "green"], "on": true, "off_variation": 1,
             "fallthrough": {"variation": 0}},
            {"key": "seats", "kind": "number", "variations": [5, 2.5], "on": true, "off_variation": 0,
             "fallthrough": {"variation": 0},
             "rules": [{"id": "big", "clauses": [{"context_kind": "org", "attribute": "plan", "op": "in", "values": ["enterprise"]}],
                        "serve": {"variation": 1}}]},
            {"key": "limits", "kind": "json", "variations": [{"max": 3}], "on": true, "fallthrough": {"variation": 0}}
            ]""",
        )
        val provider = VexilProvider(
            server.key("server"),
            VexilOptions().apply {
                endpoint = server.endpoint
                initialBackoffMillis = 100
                maxBackoffMillis = 500
                flushIntervalMillis = 3_600_000
            },
        )
        api.setProviderAndWait(provider)
        val client = api.client

        val checkout = client.getBooleanDetails("checkout", false, alice)
        assertEquals(listOf<Any?>(true, "DEFAULT", "1"), listOf(checkout.value, checkout.reason, checkout.variant))
        assertEquals("FALLTHROUGH", checkout.flagMetadata.getString("vexilReason"))
        val bob = client.getBooleanDetails("checkout", true, ImmutableContext("bob"))
        assertEquals(listOf<Any?>(false, "TARGETING_MATCH", "bob"), listOf(bob.value, bob.reason, bob.flagMetadata.getString("ruleId")))
        assertEquals("blue", client.getStringValue("banner", "none", alice))
        assertEquals(5, client.getIntegerValue("seats", 0, alice))
        assertEquals(3, client.getObjectValue("limits", Value(), alice).asStructure().getValue("max").asInteger())
        val org = ImmutableContext(
            mapOf(
                "kind" to Value("multi"),
                "user" to Value(ImmutableStructure(mapOf(EvaluationContext.TARGETING_KEY to Value("alice")))),
                "org" to Value(ImmutableStructure(mapOf(EvaluationContext.TARGETING_KEY to Value("acme"), "plan" to Value("enterprise")))),
            ),
        )
        assertEquals(2.5, client.getDoubleValue("seats", 0.0, org))

        // Errors, as OpenFeature's codes, with the default.
        val missing = client.getBooleanDetails("nope", true, alice)
        assertEquals(listOf<Any?>(true, ErrorCode.FLAG_NOT_FOUND), listOf(missing.value, missing.errorCode))
        val wrong = client.getStringDetails("checkout", "d", alice)
        assertEquals(listOf<Any?>("d", ErrorCode.TYPE_MISMATCH), listOf(wrong.value, wrong.errorCode))
        val fraction = client.getIntegerDetails("seats", 7, org)
        assertEquals(listOf<Any?>(7, ErrorCode.TYPE_MISMATCH), listOf(fraction.value, fraction.errorCode))
        val noKey = client.getBooleanDetails("checkout", true, ImmutableContext(mapOf("plan" to Value("x"))))
        assertEquals(ErrorCode.TARGETING_KEY_MISSING, noKey.errorCode)
        val invalid = client.getBooleanDetails("checkout", true, ImmutableContext("a", mapOf("kind" to Value("no spaces!"))))
        assertEquals(ErrorCode.INVALID_CONTEXT, invalid.errorCode)

        // Events: a change names its flag; STALE while the server is down, READY when back.
        val changed = CopyOnWriteArrayList<List<String>>()
        val events = CopyOnWriteArrayList<String>()
        api.onProviderConfigurationChanged { changed += it.flagsChanged ?: emptyList() }
        api.onProviderStale { events += "stale" }
        api.onProviderReady { events += "ready" }
        server.cli("flags", "toggle", "banner", "off")
        waitFor("CONFIGURATION_CHANGED") { changed.isNotEmpty() }
        assertEquals(listOf("banner"), changed.first())
        assertEquals("green", client.getStringValue("banner", "none", alice))

        val tracked = { server.metric("""vexil_events_total{environment="default/production",type="track"}""") }
        val before = tracked()
        client.track("purchase", alice, MutableTrackingEventDetails(42))
        assertTrue(provider.client.flushBlocking(5_000))
        assertEquals(before + 1, tracked())

        events.clear()
        server.kill()
        waitFor("PROVIDER_STALE") { "stale" in events }
        val held = client.getBooleanDetails("checkout", false, alice)
        assertEquals(listOf<Any?>(true, "STALE"), listOf(held.value, held.reason))
        events.clear()
        server.start()
        waitFor("PROVIDER_READY again") { "ready" in events }
        assertEquals(ProviderState.READY, client.providerState)

        // The SDK shuts its providers down on a thread of its own.
        api.shutdown()
        waitFor("the client closed by the provider's shutdown") { provider.client.status().status == Status.CLOSED }
    }
}
