package dev.vexil

/**
 * The native methods of `vexil_jni` (sdk-kotlin/jni). Each call passes the Java object owning
 * a handle along with the handle, so that the owner (and with it the native memory, freed by
 * [NativeCleaner]) stays reachable for the duration of the call.
 */
internal object Native {
    // Type codes of [variationDetail].
    const val BOOL = 0
    const val STRING = 1
    const val NUMBER = 2
    const val JSON = 3

    @JvmStatic external fun contextNew(json: String): Long
    @JvmStatic external fun contextClose(owner: Any, handle: Long)
    @JvmStatic external fun contextFree(handle: Long)

    @JvmStatic external fun clientNew(
        sdkKey: String,
        optionsJson: String,
        dispatcher: Any?,
        logSink: Any?,
        testData: Any?,
        testDataHandle: Long,
    ): Long

    @JvmStatic external fun testDataNew(): Long
    @JvmStatic external fun testDataUpdate(owner: Any, handle: Long, what: Int, key: String?, json: String)
    @JvmStatic external fun testDataRemove(owner: Any, handle: Long, segment: Boolean, key: String): Boolean
    @JvmStatic external fun testDataFree(handle: Long)
    @JvmStatic external fun clientClose(owner: Any, handle: Long)
    @JvmStatic external fun clientFree(handle: Long)

    // The hot calls pass `flagKey.length` along: it saves the native side a JNI call.
    @JvmStatic external fun boolVariation(
        client: Any, clientHandle: Long, flagKey: String, flagKeyLength: Int, context: Any, contextHandle: Long,
        default: Boolean,
    ): Boolean

    @JvmStatic external fun stringVariation(
        client: Any, clientHandle: Long, flagKey: String, context: Any, contextHandle: Long, default: String,
    ): String

    @JvmStatic external fun doubleVariation(
        client: Any, clientHandle: Long, flagKey: String, flagKeyLength: Int, context: Any, contextHandle: Long,
        default: Double,
    ): Double

    @JvmStatic external fun jsonVariation(
        client: Any, clientHandle: Long, flagKey: String, context: Any, contextHandle: Long, defaultJson: String,
    ): String

    @JvmStatic external fun variationDetail(
        client: Any, clientHandle: Long, flagKey: String, context: Any, contextHandle: Long,
        type: Int, defaultJson: String,
    ): String

    @JvmStatic external fun variationDetailJson(
        client: Any, clientHandle: Long, flagKey: String, contextJson: String, type: Int, defaultJson: String,
    ): String

    @JvmStatic external fun allFlags(client: Any, clientHandle: Long, context: Any, contextHandle: Long): String

    @JvmStatic external fun waitForInitialization(client: Any, clientHandle: Long, timeoutMillis: Long): String
    @JvmStatic external fun status(client: Any, clientHandle: Long): String

    @JvmStatic external fun identify(
        client: Any, clientHandle: Long, context: Any, contextHandle: Long, timeoutMillis: Long,
    ): Boolean

    @JvmStatic external fun track(
        client: Any, clientHandle: Long, eventName: String, context: Any, contextHandle: Long,
        value: Double, hasValue: Boolean,
    )

    @JvmStatic external fun flush(client: Any, clientHandle: Long, timeoutMillis: Long): Boolean

    /** Nanoseconds taken by [iterations] bool variations made in Rust (benchmark baseline). */
    @JvmStatic external fun benchmarkBoolVariation(
        client: Any, clientHandle: Long, flagKey: String, context: Any, contextHandle: Long, iterations: Long,
    ): Long

    /** Panics in Rust: the test of the panic boundary. */
    @JvmStatic external fun panicForTest()
}
