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

/// A failure of the core, with the code of this package that its code in the core's table
/// maps to (options are arguments here; a bug is `VEXIL_PANIC`). The core names snake_case
/// fields where the package's API has camelCase ones (`sdk_key`, `event_name`).
pub fn from_core(failure: vexil_core::Failure) -> Error {
    use vexil_core::ErrorCode as Core;
    let code = match failure.code {
        Core::InvalidKey => ErrorCode::InvalidKey,
        Core::InvalidEndpoint => ErrorCode::InvalidEndpoint,
        Core::InvalidContext => ErrorCode::InvalidContext,
        Core::Runtime => ErrorCode::Runtime,
        Core::Internal => ErrorCode::Panic,
        Core::InCallback | Core::Closed => ErrorCode::Internal,
        Core::InvalidOptions
        | Core::InvalidArgument
        | Core::InvalidJson
        | Core::InvalidUtf8
        | Core::NullArgument => ErrorCode::InvalidArgument,
    };
    error(
        code,
        failure
            .renamed(&[("sdk_key", "sdkKey"), ("event_name", "eventName")])
            .message,
    )
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
                vexil_core::panic_message(&*payload)
            ),
        )),
    }
}
