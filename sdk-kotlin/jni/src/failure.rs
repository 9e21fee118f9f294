//! Errors of the native methods and how they reach Java: every failure becomes a Java
//! exception of the `VexilException` hierarchy; a Rust panic becomes a `NativeException`
//! instead of unwinding into (and aborting) the JVM.

use jni::Env;
use jni::errors::ErrorPolicy;
use jni::strings::{JNIStr, JNIString};

/// Why a native call failed.
#[derive(Debug)]
pub enum Failure {
    /// A client option or the SDK key is not valid; the message names the field.
    Config(String),
    /// A context is not valid; the message says why.
    InvalidContext(String),
    /// A Context was used after `close()`.
    Closed(String),
    /// A JNI call failed (a Java exception may be pending).
    Jni(jni::errors::Error),
}

impl From<jni::errors::Error> for Failure {
    fn from(err: jni::errors::Error) -> Self {
        Failure::Jni(err)
    }
}

impl Failure {
    fn class_and_message(self) -> (&'static JNIStr, String) {
        match self {
            Failure::Config(message) => {
                (jni::jni_str!("dev/vexil/InvalidConfigException"), message)
            }
            Failure::InvalidContext(message) => {
                (jni::jni_str!("dev/vexil/InvalidContextException"), message)
            }
            Failure::Closed(message) => (jni::jni_str!("dev/vexil/ClosedException"), message),
            Failure::Jni(err) => (
                jni::jni_str!("dev/vexil/NativeException"),
                format!("JNI call failed: {err}"),
            ),
        }
    }
}

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
        let detail = if let Some(text) = payload.downcast_ref::<&'static str>() {
            (*text).to_owned()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            "no message".to_owned()
        };
        if env.exception_check() {
            env.exception_clear();
        }
        let _ = env.throw_new(
            jni::jni_str!("dev/vexil/NativeException"),
            JNIString::from(format!(
                "internal error in the Vexil native library: {detail}"
            )),
        );
        Ok(T::default())
    }
}
