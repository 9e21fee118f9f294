//! The errors of the SDK, in one table every language binding maps to its own idiom.
//!
//! Evaluation never fails: a variation call answers the default with an `ERROR` reason whose
//! [`ErrorKind`](crate::ErrorKind) says why. What can fail is a *call*: creating a client with
//! bad options, a context that must be valid and is not, misuse at a language boundary. Every
//! such failure is a [`Failure`]: an [`ErrorCode`] from the table below and a message naming
//! the argument or field at fault (never a secret). Each binding turns the code into its
//! language's form (an exception class, an `Error` with a `code`, an `error` value, a C status)
//! and invents none of its own.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// What went wrong with a call. The numbers are stable: the C ABI returns them as they are.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A required argument was missing (a NULL pointer at the C ABI).
    NullArgument = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// A JSON argument did not parse.
    InvalidJson = 3,
    /// A context that must be valid (identify, track, all flags, the first context) is not.
    InvalidContext = 4,
    /// A client option is not valid.
    InvalidOptions = 5,
    /// The SDK key is not a server, client or mobile key.
    InvalidKey = 6,
    /// The endpoint is not a usable `http://` or `https://` address.
    InvalidEndpoint = 7,
    /// Another argument is out of range or of the wrong type.
    InvalidArgument = 8,
    /// The client's background runtime could not start (threads, file descriptors).
    Runtime = 9,
    /// A call that waits was made from inside a change listener, where it would deadlock.
    InCallback = 10,
    /// A bug in Vexil, caught at the boundary: the host process is unaffected.
    Internal = 11,
    /// The client or context was released before the call.
    Closed = 12,
}

impl ErrorCode {
    /// Every code, in the order of their numbers.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::NullArgument,
        ErrorCode::InvalidUtf8,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidContext,
        ErrorCode::InvalidOptions,
        ErrorCode::InvalidKey,
        ErrorCode::InvalidEndpoint,
        ErrorCode::InvalidArgument,
        ErrorCode::Runtime,
        ErrorCode::InCallback,
        ErrorCode::Internal,
        ErrorCode::Closed,
    ];

    /// The stable number (the C ABI's status code).
    pub fn number(self) -> i32 {
        self as i32
    }

    /// The code for a number, if it is one.
    pub fn from_number(number: i32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.number() == number)
    }

    /// The stable name, as bindings show it: `INVALID_CONTEXT`, …
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::NullArgument => "NULL_ARGUMENT",
            ErrorCode::InvalidUtf8 => "INVALID_UTF8",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::InvalidOptions => "INVALID_OPTIONS",
            ErrorCode::InvalidKey => "INVALID_KEY",
            ErrorCode::InvalidEndpoint => "INVALID_ENDPOINT",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::Runtime => "RUNTIME",
            ErrorCode::InCallback => "IN_CALLBACK",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Closed => "CLOSED",
        }
    }

    /// The family the code belongs to: bindings with fewer error types than codes map the
    /// families, so that all of them group the codes the same way.
    pub fn category(self) -> ErrorCategory {
        match self {
            ErrorCode::InvalidContext => ErrorCategory::Context,
            ErrorCode::Closed => ErrorCategory::Closed,
            ErrorCode::Runtime | ErrorCode::Internal | ErrorCode::InCallback => {
                ErrorCategory::Native
            }
            ErrorCode::NullArgument
            | ErrorCode::InvalidUtf8
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidOptions
            | ErrorCode::InvalidKey
            | ErrorCode::InvalidEndpoint
            | ErrorCode::InvalidArgument => ErrorCategory::Input,
        }
    }

    /// Whether the code reports a mistake in what the caller passed (as opposed to the
    /// environment or a bug): bindings with a "bad argument" family of errors use it.
    pub fn is_caller_mistake(self) -> bool {
        matches!(
            self.category(),
            ErrorCategory::Input | ErrorCategory::Context
        )
    }
}

/// The families of [`ErrorCode`]s (see [`ErrorCode::category`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// The context is not valid (`INVALID_CONTEXT`).
    Context,
    /// Anything else the caller passed is not valid: options, the key, the endpoint, an
    /// argument, its JSON or UTF-8, or a missing one.
    Input,
    /// The client or context was released before the call (`CLOSED`).
    Closed,
    /// Not the caller's input: the runtime could not start, a waiting call from inside a
    /// listener, a bug (`RUNTIME`, `IN_CALLBACK`, `INTERNAL`).
    Native,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed call: its code, and a message naming the argument or field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// `INVALID_ARGUMENT`, naming `field`.
    pub fn invalid_argument(field: &str, problem: impl std::fmt::Display) -> Failure {
        Failure::new(ErrorCode::InvalidArgument, format!("{field}: {problem}"))
    }

    /// `NULL_ARGUMENT`, naming `field`.
    pub fn missing(field: &str) -> Failure {
        Failure::new(
            ErrorCode::NullArgument,
            format!("{field}: must not be NULL"),
        )
    }

    /// The same failure naming the field its message starts with as a binding names it: the
    /// first `(core name, binding name)` of `names` whose core name starts the message
    /// (`sdk_key: …` becomes `sdkKey: …`).
    pub fn renamed(mut self, names: &[(&str, &str)]) -> Failure {
        let renamed = names.iter().find_map(|(core, binding)| {
            let rest = self.message.strip_prefix(core)?;
            Some(format!("{binding}{rest}"))
        });
        if let Some(message) = renamed {
            self.message = message;
        }
        self
    }

    /// The same failure with `prefix.` in front of the field it names (`context: …` becomes
    /// `options.context: …`).
    pub fn within(mut self, prefix: &str) -> Failure {
        self.message = format!("{prefix}.{}", self.message);
        self
    }
}

/// Why a client could not be created.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the SDK key must start with vxl-server-, vxl-client- or vxl-mobile-")]
    InvalidKey,
    #[error("invalid endpoint {endpoint:?}: {message}")]
    InvalidEndpoint { endpoint: String, message: String },
    #[error("{0}")]
    InvalidOptions(String),
    #[error("cannot start the client's background runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

impl Error {
    /// This error's code in the table.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidKey => ErrorCode::InvalidKey,
            Error::InvalidEndpoint { .. } => ErrorCode::InvalidEndpoint,
            Error::InvalidOptions(_) => ErrorCode::InvalidOptions,
            Error::Runtime(_) => ErrorCode::Runtime,
        }
    }
}

impl From<Error> for Failure {
    /// The message names the option at fault, as `options.<name>` or `sdk_key`.
    fn from(err: Error) -> Failure {
        let message = match &err {
            Error::InvalidKey => format!("sdk_key: {err}"),
            Error::InvalidEndpoint { .. } => format!("options.endpoint: {err}"),
            Error::InvalidOptions(_) | Error::Runtime(_) => err.to_string(),
        };
        Failure::new(err.code(), message)
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Runs a binding's entry point so that a panic becomes an `INTERNAL` failure instead of
/// unwinding into (and aborting) the host: the one guard every binding puts around its calls.
pub fn guard<T>(body: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => Err(Failure::new(
            ErrorCode::Internal,
            format!(
                "internal error in the Vexil SDK (please report it): {}",
                panic_message(&*payload)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_are_unique_and_round_trip() {
        let mut names = std::collections::HashSet::new();
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code.number(), i32::try_from(i).unwrap() + 1);
            assert_eq!(ErrorCode::from_number(code.number()), Some(code));
            assert!(names.insert(code.name()), "{code:?}");
        }
        assert_eq!(ErrorCode::from_number(0), None);
        assert_eq!(ErrorCode::from_number(13), None);
    }

    #[test]
    fn caller_mistakes_are_the_context_and_input_categories() {
        for code in ErrorCode::ALL {
            let expected = !matches!(
                code,
                ErrorCode::Runtime
                    | ErrorCode::Internal
                    | ErrorCode::InCallback
                    | ErrorCode::Closed
            );
            assert_eq!(code.is_caller_mistake(), expected, "{code:?}");
        }
    }

    #[test]
    fn a_panic_becomes_an_internal_failure() {
        let failure = guard(|| -> Result<(), Failure> { panic!("boom") }).unwrap_err();
        assert_eq!(failure.code, ErrorCode::Internal);
        assert!(failure.message.contains("boom"), "{}", failure.message);
    }

    #[test]
    fn creation_errors_name_the_option() {
        let failure = Failure::from(Error::InvalidKey);
        assert_eq!(failure.code, ErrorCode::InvalidKey);
        assert!(failure.message.starts_with("sdk_key: "));
        let failure = Failure::from(Error::InvalidEndpoint {
            endpoint: "x".into(),
            message: "bad".into(),
        });
        assert!(failure.message.starts_with("options.endpoint: "));
    }

    #[test]
    fn renamed_names_the_first_field_that_starts_the_message() {
        let names = [("options.endpoint", "endpoint"), ("options", "config")];
        let failure = Failure::new(ErrorCode::InvalidEndpoint, "options.endpoint: bad");
        assert_eq!(failure.renamed(&names).message, "endpoint: bad");
        let failure = Failure::new(ErrorCode::InvalidOptions, "options: not JSON");
        assert_eq!(failure.renamed(&names).message, "config: not JSON");
        let failure = Failure::new(ErrorCode::InvalidContext, "context: no key");
        assert_eq!(failure.renamed(&names).message, "context: no key");
    }
}
