package dev.vexil

import org.junit.jupiter.api.Tag
import org.junit.jupiter.api.Test
import java.nio.file.Files

/**
 * A bool variation with a reused context, called from Kotlin through JNI, against the same
 * call made N times inside Rust in the same process (the engine's own cost). A warmed loop;
 * run with `mvn test -Dgroups=benchmark -DexcludedGroups=` and a release build of vexil-jni.
 * Prints numbers, asserts none (times depend on the machine).
 */
@Tag("benchmark")
class BenchmarkTest {
    @Test
    fun `bool variation with a reused context`() {
        val ruleset = Files.createTempFile("vexil-bench-", ".json").toFile()
        ruleset.writeText(
            """{"flags": [{"key": "checkout", "kind": "bool", "variations": [false, true], "on": true,
                "fallthrough": {"variation": 1},
                "rules": [{"id": "nl", "clauses": [{"attribute": "country", "op": "in", "values": ["NL"]}],
                           "serve": {"variation": 0}}]}], "segments": []}""",
        )
        val iterations = 2_000_000L
        VexilClient("vxl-server-bench") { offline = true; bootstrap = ruleset.path; evaluationSummaries = true }.use { client ->
            context("user", "alice") { attr("country", "DE") }.use { alice ->
                var sink = 0
                fun kotlinLoop(n: Long): Long {
                    val started = System.nanoTime()
                    var i = 0L
                    while (i < n) {
                        if (client.boolVariation("checkout", alice, false)) sink++
                        i++
                    }
                    return System.nanoTime() - started
                }
                repeat(5) { kotlinLoop(200_000) } // JIT warm-up
                client.nativeBoolVariationNanos("checkout", alice, 200_000)
                val kotlinRuns = (1..5).map { kotlinLoop(iterations).toDouble() / iterations }
                val rustRuns = (1..5).map { client.nativeBoolVariationNanos("checkout", alice, iterations).toDouble() / iterations }
                val kotlin = kotlinRuns.min()
                val rust = rustRuns.min()
                check(sink > 0)
                println("BENCH boolVariation (reused context): Kotlin/JNI %.1f ns/call, Rust in-process %.1f ns/call, ratio %.2fx (best of 5 x %d)"
                    .format(kotlin, rust, kotlin / rust, iterations))
                println("BENCH runs Kotlin ${kotlinRuns.map { "%.1f".format(it) }}, Rust ${rustRuns.map { "%.1f".format(it) }}")
            }
        }
        ruleset.delete()
    }
}
