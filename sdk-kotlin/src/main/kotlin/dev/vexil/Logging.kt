package dev.vexil

import java.util.logging.Level

/** The level of a client's log message, most severe first. */
enum class LogLevel { ERROR, WARN, INFO, DEBUG, TRACE }

/**
 * Where a client's log messages go ([VexilOptions.logger]). A refused SDK key is an [LogLevel.ERROR],
 * a dropped event batch or an unreadable cache file a [LogLevel.WARN], status changes
 * [LogLevel.DEBUG]. Called on the client's threads, one message at a time: return quickly. An
 * identical message arrives at most once a minute, the next one after that saying how many were
 * left out.
 */
fun interface VexilLogger {
    fun log(level: LogLevel, message: String)

    /** Whether messages of [level] are wanted: asked before each message is built. */
    fun isEnabled(level: LogLevel): Boolean = true

    companion object {
        /** Logs nothing. */
        @JvmField
        val NONE: VexilLogger = object : VexilLogger {
            override fun log(level: LogLevel, message: String) {}
            override fun isEnabled(level: LogLevel) = false
        }

        /**
         * The default: SLF4J's logger `dev.vexil` when SLF4J is on the class path with a
         * provider, else java.util.logging's logger `dev.vexil`.
         */
        @JvmStatic
        fun default(): VexilLogger = Slf4jLogger.create() ?: JulLogger()
    }
}

/** java.util.logging's logger `dev.vexil`; trace is FINER. */
internal class JulLogger : VexilLogger {
    private val logger = java.util.logging.Logger.getLogger("dev.vexil")

    private fun julLevel(level: LogLevel): Level = when (level) {
        LogLevel.ERROR -> Level.SEVERE
        LogLevel.WARN -> Level.WARNING
        LogLevel.INFO -> Level.INFO
        LogLevel.DEBUG -> Level.FINE
        LogLevel.TRACE -> Level.FINER
    }

    override fun isEnabled(level: LogLevel) = logger.isLoggable(julLevel(level))

    override fun log(level: LogLevel, message: String) = logger.log(julLevel(level), message)
}

/**
 * SLF4J's logger `dev.vexil`, called by reflection so that SLF4J stays optional. `null` when
 * SLF4J is absent, or present without a provider (its no-operation factory would swallow
 * every message: java.util.logging is better then).
 */
internal class Slf4jLogger private constructor(
    private val logger: Any,
    private val enabled: Map<LogLevel, java.lang.reflect.Method>,
    private val write: Map<LogLevel, java.lang.reflect.Method>,
) : VexilLogger {
    override fun isEnabled(level: LogLevel) = enabled.getValue(level).invoke(logger) as Boolean

    override fun log(level: LogLevel, message: String) {
        write.getValue(level).invoke(logger, message)
    }

    companion object {
        fun create(): Slf4jLogger? = try {
            val factory = Class.forName("org.slf4j.LoggerFactory")
            val loggers = factory.getMethod("getILoggerFactory").invoke(null)
            if (loggers.javaClass.simpleName.startsWith("NOP")) {
                null
            } else {
                val logger = factory.getMethod("getLogger", String::class.java).invoke(null, "dev.vexil")
                val type = Class.forName("org.slf4j.Logger")
                val names = mapOf(
                    LogLevel.ERROR to "Error", LogLevel.WARN to "Warn", LogLevel.INFO to "Info",
                    LogLevel.DEBUG to "Debug", LogLevel.TRACE to "Trace",
                )
                Slf4jLogger(
                    logger,
                    names.mapValues { (_, name) -> type.getMethod("is${name}Enabled") },
                    names.mapValues { (_, name) -> type.getMethod(name.lowercase(), String::class.java) },
                )
            }
        } catch (_: ReflectiveOperationException) {
            null
        } catch (_: LinkageError) {
            null
        }
    }
}

/**
 * What the native library calls for a client's messages (levels as numbers, 1 error … 5
 * trace). A logger that throws is ignored: nothing unwinds into the native thread.
 */
internal class NativeLogSink(private val logger: VexilLogger) {
    private fun level(number: Int) = LogLevel.entries.getOrElse(number - 1) { LogLevel.TRACE }

    fun enabled(level: Int): Boolean = try {
        logger.isEnabled(level(level))
    } catch (_: Throwable) {
        false
    }

    fun log(level: Int, message: String) {
        try {
            logger.log(level(level), message)
        } catch (_: Throwable) {
            // The host's logger failed: nothing better to do with the message.
        }
    }
}
