package dev.vexil

import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import java.io.File

/** Creating and closing clients releases everything: native memory and the JVM heap stay flat. */
class MemoryTest {
    private fun residentKiB(): Long =
        File("/proc/self/status").readLines().first { it.startsWith("VmRSS:") }.split(Regex("\\s+"))[1].toLong()

    private fun heapKiB(): Long {
        val runtime = Runtime.getRuntime()
        repeat(3) { System.gc(); Thread.sleep(20) }
        return (runtime.totalMemory() - runtime.freeMemory()) / 1024
    }

    private fun createAndClose(count: Int) {
        repeat(count) { i ->
            VexilClient("vxl-server-memory") { offline = true }.use { client ->
                context("user", "u$i").use { user -> client.boolVariation("f", user, false) }
            }
        }
    }

    @Test
    fun `ten thousand clients created and closed keep memory flat`() {
        createAndClose(1_000) // warm-up: allocator pools, JIT, class data
        val rssBefore = residentKiB()
        val heapBefore = heapKiB()
        createAndClose(10_000)
        val heapAfter = heapKiB()
        val rssAfter = residentKiB()
        val rssGrowth = rssAfter - rssBefore
        val heapGrowth = heapAfter - heapBefore
        println("10,000 clients: native RSS ${rssBefore / 1024} -> ${rssAfter / 1024} MiB, heap ${heapBefore / 1024} -> ${heapAfter / 1024} MiB")
        // A leak of one client (runtime, thread stack, queues) is tens of KiB: 10,000 of them
        // would be hundreds of MiB. The bounds leave room for allocator and JIT noise only.
        assertTrue(rssGrowth < 40 * 1024) { "native RSS grew by $rssGrowth KiB" }
        assertTrue(heapGrowth < 16 * 1024) { "heap grew by $heapGrowth KiB" }
    }
}
