package dev.vexil

/**
 * Every error the SDK raises. Evaluation never throws for a missing flag, a wrong type or data
 * not yet received: those return the default with a reason. Exceptions are for invalid
 * configuration, invalid contexts, misuse (a closed [Context]) and failures of the native
 * library.
 */
open class VexilException @JvmOverloads constructor(message: String, cause: Throwable? = null) : RuntimeException(message, cause)

/** An option or the SDK key is not valid; the message names the option. */
class InvalidConfigException(message: String) : VexilException(message)

/** A context is not valid; the message says which part. */
class InvalidContextException(message: String) : VexilException(message)

/** A [Context] was used after [Context.close]. */
class ClosedException(message: String) : VexilException(message)

/**
 * The native library failed: it could not be loaded, or an internal error (a Rust panic) was
 * caught at the boundary instead of crashing the process.
 */
class NativeException @JvmOverloads constructor(message: String, cause: Throwable? = null) : VexilException(message, cause)
