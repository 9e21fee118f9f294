package dev.vexil

import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.yield
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.time.Duration.Companion.milliseconds
import kotlin.time.Duration.Companion.seconds

/** The client against a real vexil-server (one per test, on free ports, SQLite). */
class ServerTest {
    private lateinit var server: TestServer
    private val alice = context("user", "alice")

    @BeforeEach
    fun startServer() {
        server = TestServer()
    }

    @AfterEach
    fun stopServer() {
        alice.close()
        server.close()
    }

    private fun localClient(configure: VexilOptions.() -> Unit = {}) = VexilClient(server.key("server")) {
        endpoint = server.endpoint
        initialBackoffMillis = 100
        maxBackoffMillis = 500
        configure()
    }

    @Test
    fun `initial sync, then a change reaches a listener and the Flow`() = runBlocking {
        server.importFlags("[$BOOL_ON]")
        localClient().use { client ->
            assertEquals(Status.READY, client.awaitInitialization(10.seconds))
            val detail = client.boolVariationDetail("checkout", alice, false)
            assertTrue(detail.value)
            assertEquals(Source.NETWORK, detail.source)
            assertTrue(detail.version > 0)
            assertEquals(Status.READY, client.status().status)

            val heard = LinkedBlockingQueue<FlagChange>()
            client.addChangeListener { heard += it }
            val fromFlow = async { client.changes.first { "checkout" in it.flagKeys } }
            // Let the collector register its listener before the change.
            repeat(10) { yield() }
            Thread.sleep(100)
            server.cli("flags", "toggle", "checkout", "off")

            var change = heard.poll(10, TimeUnit.SECONDS)
            while (change != null && "checkout" !in change.flagKeys) change = heard.poll(10, TimeUnit.SECONDS)
            assertTrue(change != null) { "the listener heard no change of checkout" }
            val flowed = withTimeout(10.seconds) { fromFlow.await() }
            assertTrue(flowed.version >= change!!.version - 1)
            assertFalse(client.boolVariation("checkout", alice, true))
        }
    }

    @Test
    fun `remote evaluation with a mobile key, then identify`() = runBlocking {
        server.importFlags(
            """[{"key": "checkout", "kind": "bool", "variations": [false, true], "on": true, "off_variation": 0,
                 "fallthrough": {"variation": 1}, "client_side": true,
                 "rules": [{"id": "bob", "clauses": [{"attribute": "key", "op": "in", "values": ["bob"]}],
                            "serve": {"variation": 0}}]},
                {"key": "server-only", "kind": "bool", "variations": [false, true], "on": true,
                 "fallthrough": {"variation": 1}}]""",
        )
        VexilClient(server.key("mobile")) { endpoint = server.endpoint; context = alice }.use { client ->
            assertEquals(Status.READY, client.awaitInitialization(10.seconds))
            assertTrue(client.boolVariation("checkout", alice, false))
            val hidden = client.boolVariationDetail("server-only", alice, false)
            assertEquals(ErrorKind.FLAG_NOT_FOUND, hidden.reason.errorKind)
            assertEquals(setOf("checkout"), client.allFlags(alice).keys)

            context("user", "bob").use { bob ->
                assertTrue(client.identify(bob, 10.seconds))
                val detail = client.boolVariationDetail("checkout", bob, true)
                assertFalse(detail.value)
                assertEquals(EvaluationReason.Kind.RULE_MATCH, detail.reason.kind)
            }
        }
    }

    @Test
    fun `track and flush are counted once by the server`() {
        server.importFlags("[$BOOL_ON]")
        localClient { flushIntervalMillis = 3_600_000 }.use { client ->
            assertEquals(Status.READY, client.awaitInitializationBlocking(10_000))
            client.track("purchase", alice, 1.0)
            client.track("purchase", alice, 2.5)
            client.track("purchase", alice)
            assertTrue(client.flushBlocking(10_000))
            assertTrue(runBlocking { client.flush(10.seconds) })
            val counted = server.metric("""vexil_events_total{environment="default/production",type="track"}""")
            assertEquals(3.0, counted)
            assertTrue(client.status().events.sent >= 3)
        }
    }

    @Test
    fun `a refused key ends in FAILED with a reason`() = runBlocking {
        VexilClient("vxl-server-not-a-key-of-this-server") { endpoint = server.endpoint }.use { client ->
            assertEquals(Status.FAILED, client.awaitInitialization(10.seconds))
            val status = client.status()
            assertTrue(!status.reason.isNullOrBlank()) { "no reason in $status" }
            assertFalse(client.boolVariation("checkout", alice, false))
        }
    }

    @Test
    fun `a refused key is logged once as an error through the logger option`() = runBlocking {
        val logged = LinkedBlockingQueue<Pair<LogLevel, String>>()
        val logger = object : VexilLogger {
            override fun log(level: LogLevel, message: String) {
                logged.add(level to message)
            }
            override fun isEnabled(level: LogLevel) = level <= LogLevel.INFO
        }
        VexilClient("vxl-server-not-a-key-of-this-server") { endpoint = server.endpoint; this.logger = logger }.use { client ->
            assertEquals(Status.FAILED, client.awaitInitialization(10.seconds))
        }
        val first = logged.poll(5, TimeUnit.SECONDS)
        assertEquals(LogLevel.ERROR, first?.first) { "first message $first" }
        assertTrue(first!!.second.contains("refused the SDK key")) { first.second }
        Thread.sleep(200)
        val rest = logged.toList()
        assertTrue(rest.none { it.second.contains("refused the SDK key") }) { "logged again: $rest" }
        assertTrue(rest.all { it.first <= LogLevel.INFO }) { "below the logger's level: $rest" }
    }

    @Test
    fun `without a logger option the messages reach java util logging`() = runBlocking {
        // No SLF4J provider on the test class path: java.util.logging's `dev.vexil`.
        val records = LinkedBlockingQueue<java.util.logging.LogRecord>()
        val handler = object : java.util.logging.Handler() {
            override fun publish(record: java.util.logging.LogRecord) {
                records.add(record)
            }
            override fun flush() {}
            override fun close() {}
        }
        val jul = java.util.logging.Logger.getLogger("dev.vexil")
        jul.addHandler(handler)
        try {
            VexilClient("vxl-server-not-a-key-of-this-server") { endpoint = server.endpoint }.use { client ->
                assertEquals(Status.FAILED, client.awaitInitialization(10.seconds))
            }
            val record = records.poll(5, TimeUnit.SECONDS)
            assertEquals(java.util.logging.Level.SEVERE, record?.level) { "record ${record?.message}" }
            assertTrue(record!!.message.contains("refused the SDK key")) { record.message }
        } finally {
            jul.removeHandler(handler)
        }
    }

    @Test
    fun `awaitInitialization does not block the thread it runs on`() = runBlocking {
        // Nothing listens on this port: the client stays INITIALIZING until the timeout.
        VexilClient(server.key("server")) { endpoint = "http://127.0.0.1:${freePort()}" }.use { client ->
            // Two coroutines on this one thread: the ticker runs while initialization is awaited.
            var ticks = 0
            val ticker = launch { while (true) { ticks++; delay(1) } }
            val started = System.nanoTime()
            val status = client.awaitInitialization(500.milliseconds)
            val waited = (System.nanoTime() - started) / 1_000_000
            ticker.cancel()
            assertEquals(Status.INITIALIZING, status)
            assertTrue(waited >= 450) { "returned after $waited ms" }
            assertTrue(ticks >= 20) { "the thread was blocked: $ticks ticks in $waited ms" }
        }
    }
}
