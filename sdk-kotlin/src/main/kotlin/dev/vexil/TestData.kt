package dev.vexil

import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonPrimitive

/**
 * Flags and segments held in memory, standing in for the server in an application's tests:
 * set [VexilOptions.testData], then change flags one at a time. Each change reaches every
 * client at once (and their change listeners); a flag that would not compile throws a
 * [VexilException] naming the field, and nothing changes. Thread-safe; its native memory is
 * released once it is unreachable (clients made on it keep what they need).
 */
class TestData {
    internal val handle: Long

    init {
        NativeLibrary.ensureLoaded()
        handle = Native.testDataNew()
        val owned = handle
        NativeCleaner.register(this) { Native.testDataFree(owned) }
    }

    /** Adds or replaces a flag given as JSON in the export format (key, kind, variations, on, rules, fallthrough, …). */
    fun updateFlag(flagJson: String) = Native.testDataUpdate(this, handle, 0, null, flagJson)

    /** Adds or replaces a segment given as JSON in the export format. */
    fun updateSegment(segmentJson: String) = Native.testDataUpdate(this, handle, 1, null, segmentJson)

    /** Makes flag [key] serve [value] to every context (a flag of the value's type). */
    fun setValue(key: String, value: JsonElement) = Native.testDataUpdate(this, handle, 2, key, value.toString())

    fun setValue(key: String, value: Boolean) = setValue(key, JsonPrimitive(value))

    fun setValue(key: String, value: String) = setValue(key, JsonPrimitive(value))

    fun setValue(key: String, value: Double) = setValue(key, JsonPrimitive(value))

    /** Removes flag [key]; whether it was there. */
    fun removeFlag(key: String): Boolean = Native.testDataRemove(this, handle, false, key)

    /** Removes segment [key]; whether it was there. */
    fun removeSegment(key: String): Boolean = Native.testDataRemove(this, handle, true, key)
}
