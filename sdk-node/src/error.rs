//! The errors thrown to JavaScript: an `Error` whose `code` says what went wrong, and whose
//! message names the argument or field at fault.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// The `code` property of every error the addon throws (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// An argument or option has the wrong type or value; the message names it.
    InvalidArgument,
    /// The SDK key is not a Vexil key (`vxl-server-`, `vxl-client-`, `vxl-mobile-`).
    InvalidKey,
    /// The endpoint is not a usable `http://` or `https://` address.
    InvalidEndpoint,
    /// A context given to `new Context`, `identify`, `track`, `allFlags` or the `context`
    /// option is not valid.
    InvalidContext,
    /// The client's background thread could not be started.
    Runtime,
    /// A bug inside the addon: the call failed, the process goes on.
    Panic,
    /// A Node-API call failed (for instance while the environment shuts down).
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "VEXIL_INVALID_ARGUMENT",
            ErrorCode::InvalidKey => "VEXIL_INVALID_KEY",
            ErrorCode::InvalidEndpoint => "VEXIL_INVALID_ENDPOINT",
            ErrorCode::InvalidContext => "VEXIL_INVALID_CONTEXT",
            ErrorCode::Runtime => "VEXIL_RUNTIME",
            ErrorCode::Panic => "VEXIL_PANIC",
            ErrorCode::Internal => "VEXIL_INTERNAL",
        }
    }
}

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<napi::Status> for ErrorCode {
    fn from(_: napi::Status) -> Self {
        ErrorCode::Internal
    }
}

pub type Error = napi::Error<ErrorCode>;
pub type Result<T> = std::result::Result<T, Error>;

pub fn error(code: ErrorCode, message: impl ToString) -> Error {
    napi::Error::new(code, message)
}

/// `field: message`, with `VEXIL_INVALID_ARGUMENT`.
pub fn invalid_argument(field: &str, message: impl std::fmt::Display) -> Error {
    error(ErrorCode::InvalidArgument, format!("{field}: {message}"))
}

/// A failed Node-API call.
pub fn internal(err: napi::Error) -> Error {
    error(ErrorCode::Internal, err.reason)
}

pub fn from_core(err: vexil_core::Error) -> Error {
    let code = match err {
        vexil_core::Error::InvalidKey => ErrorCode::InvalidKey,
        vexil_core::Error::InvalidEndpoint { .. } => ErrorCode::InvalidEndpoint,
        vexil_core::Error::Runtime(_) => ErrorCode::Runtime,
    };
    let message = match code {
        ErrorCode::InvalidKey => format!("sdkKey: {err}"),
        ErrorCode::InvalidEndpoint => format!("options.endpoint: {err}"),
        _ => err.to_string(),
    };
    error(code, message)
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Runs an entry point's body so that a panic becomes a `VEXIL_PANIC` exception instead of
/// unwinding into Node (which would abort the process).
pub fn guard<T>(body: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => Err(error(
            ErrorCode::Panic,
            format!(
                "internal error in the Vexil addon: {}",
                panic_message(&*payload)
            ),
        )),
    }
}
