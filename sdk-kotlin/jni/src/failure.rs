//! Errors of the native methods and how they reach Java: every failure becomes a Java
//! exception of the `VexilException` hierarchy, chosen by its code in the core's one table;
//! a Rust panic becomes a `NativeException` instead of unwinding into (and aborting) the JVM.

use jni::Env;
use jni::errors::ErrorPolicy;
use jni::strings::{JNIStr, JNIString};
use vexil_core::{ErrorCategory, ErrorCode};

/// Why a native call failed.
#[derive(Debug)]
pub enum Failure {
    /// A failure of the core (or of an argument checked here), with its code.
    Core(vexil_core::Failure),
    /// A JNI call failed (a Java exception may be pending).
    Jni(jni::errors::Error),
}

impl From<jni::errors::Error> for Failure {
    fn from(err: jni::errors::Error) -> Self {
        Failure::Jni(err)
    }
}

impl From<vexil_core::Failure> for Failure {
    fn from(failure: vexil_core::Failure) -> Self {
        Failure::Core(failure)
    }
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure::Core(vexil_core::Failure::new(code, message))
    }

    fn class_and_message(self) -> (&'static JNIStr, String) {
        match self {
            Failure::Core(failure) => {
                let class = match failure.code.category() {
                    ErrorCategory::Context => jni::jni_str!("dev/vexil/InvalidContextException"),
                    ErrorCategory::Closed => jni::jni_str!("dev/vexil/ClosedException"),
                    ErrorCategory::Native => jni::jni_str!("dev/vexil/NativeException"),
                    ErrorCategory::Input => jni::jni_str!("dev/vexil/InvalidConfigException"),
                };
                (class, failure.renamed(&KOTLIN_NAMES).message)
            }
            Failure::Jni(err) => (
                jni::jni_str!("dev/vexil/NativeException"),
                format!("JNI call failed: {err}"),
            ),
        }
    }
}

/// The core's option names, and the properties of `VexilOptions` and the arguments of the
/// Kotlin API that hold them, for the messages of exceptions.
const KOTLIN_NAMES: [(&str, &str); 13] = [
    ("sdk_key", "sdkKey"),
    ("event_name", "eventName"),
    ("options.endpoint", "endpoint"),
    ("options.context", "context"),
    ("options.connectTimeoutMs", "connectTimeoutMillis"),
    ("options.streamTimeoutMs", "streamTimeoutMillis"),
    ("options.initialBackoffMs", "initialBackoffMillis"),
    ("options.maxBackoffMs", "maxBackoffMillis"),
    ("options.maxCacheAgeMs", "maxCacheAgeMillis"),
    ("options.events.capacity", "eventCapacity"),
    ("options.events.batchSize", "eventBatchSize"),
    ("options.events.flushIntervalMs", "flushIntervalMillis"),
    ("options.events.enabled", "eventsEnabled"),
];

/// Throws the matching `dev.vexil` exception and returns the type's zero value (which Java
/// never sees: the exception is pending when the native method returns).
#[derive(Debug, Default)]
pub struct ThrowVexilException;

impl<T: Default> ErrorPolicy<T, Failure> for ThrowVexilException {
    type Captures<'unowned_env_local: 'native_method, 'native_method> = ();

    fn on_error<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _captures: &mut Self::Captures<'unowned_env_local, 'native_method>,
        err: Failure,
    ) -> jni::errors::Result<T> {
        // A Java exception already pending (from a failed JNI call) says more than ours would.
        if env.exception_check() {
            return Ok(T::default());
        }
        let (class, message) = err.class_and_message();
        // `throw_new` reports the now-pending exception as an error: that is the intent here.
        let _ = env.throw_new(class, JNIString::from(message));
        Ok(T::default())
    }

    fn on_panic<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _captures: &mut Self::Captures<'unowned_env_local, 'native_method>,
        payload: Box<dyn std::any::Any + Send + 'static>,
    ) -> jni::errors::Result<T> {
        if env.exception_check() {
            env.exception_clear();
        }
        let _ = env.throw_new(
            jni::jni_str!("dev/vexil/NativeException"),
            JNIString::from(format!(
                "internal error in the Vexil native library: {}",
                vexil_core::panic_message(&*payload)
            )),
        );
        Ok(T::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kotlin_names(message: &str) -> String {
        vexil_core::Failure::new(ErrorCode::InvalidOptions, message)
            .renamed(&KOTLIN_NAMES)
            .message
    }

    #[test]
    fn options_are_named_as_kotlin_names_them() {
        assert_eq!(
            kotlin_names("options.events.capacity: must be at least 1"),
            "eventCapacity: must be at least 1"
        );
        assert_eq!(
            kotlin_names("options.connectTimeoutMs: invalid value"),
            "connectTimeoutMillis: invalid value"
        );
        assert_eq!(kotlin_names("context: no key"), "context: no key");
    }
}
