package dev.vexil

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/** TestData: flags a test changes one at a time, without a server or a file. */
class TestDataTest {
    private val alice = context("user", "alice")
    private val bob = context("user", "bob")

    @Test
    fun `changes reach the client at once and its listeners`() {
        val data = TestData()
        data.setValue("checkout", true)
        VexilClient("vxl-server-test") { testData = data }.use { client ->
            assertEquals(Status.READY, client.status().status)
            assertTrue(client.boolVariation("checkout", alice, false))
            val changes = LinkedBlockingQueue<FlagChange>()
            client.addChangeListener { changes.add(it) }
            data.setValue("checkout", false)
            assertFalse(client.boolVariation("checkout", alice, true), "seen at once")
            assertEquals(listOf("checkout"), changes.poll(5, TimeUnit.SECONDS)?.flagKeys)

            data.updateFlag(
                """{"key": "banner", "kind": "string", "variations": ["plain", "gold"], "on": true,
                   "rules": [{"id": "bob", "clauses": [{"attribute": "key", "op": "in", "values": ["bob"]}],
                              "serve": {"variation": 1}}],
                   "fallthrough": {"variation": 0}}""",
            )
            assertEquals("gold", client.stringVariation("banner", bob, "?"))
            assertEquals("plain", client.stringVariation("banner", alice, "?"))
            val refused = assertThrows<InvalidConfigException> {
                data.updateFlag("""{"key": "banner", "kind": "string", "variations": ["x"], "on": true, "fallthrough": {"variation": 4}}""")
            }
            assertTrue(refused.message!!.contains("fallthrough")) { refused.message }
            assertEquals("gold", client.stringVariation("banner", bob, "?"), "nothing changed")
            assertTrue(data.removeFlag("banner"))
            assertFalse(data.removeFlag("banner"))
            assertEquals("?", client.stringVariation("banner", bob, "?"))
        }
    }
}
