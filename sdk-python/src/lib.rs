//! The Python SDK's native module, `vexil._native` (pyo3), over vexil-core. The Python
//! package `vexil` (in `python/`) re-exports it and adds the asyncio forms.
//!
//! Every entry point runs inside [`guard`], so that a panic becomes `vexil.InternalError`
//! instead of taking the interpreter down, and releases the GIL around anything that waits.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod client;
mod context;
mod convert;
mod test_data;

use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use vexil_core::{ErrorCode, Failure};

create_exception!(
    vexil,
    VexilError,
    PyException,
    "Base class of every error the Vexil SDK raises."
);
create_exception!(
    vexil,
    ConfigurationError,
    VexilError,
    "A client option is not valid (the message names it)."
);
create_exception!(
    vexil,
    InvalidContextError,
    VexilError,
    "A context is not valid where a valid one is required (the message says why)."
);
create_exception!(
    vexil,
    ClientStartError,
    VexilError,
    "The client's background runtime could not start."
);
create_exception!(
    vexil,
    InternalError,
    VexilError,
    "A bug in the SDK was caught before it could harm the process; please report it."
);

/// Runs `f`, turning a panic into `vexil.InternalError`.
pub(crate) fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(InternalError::new_err(format!(
            "internal error in the Vexil SDK: {}",
            vexil_core::panic_message(&*payload)
        ))),
    }
}

/// The Python exception for a failure of the core, by its code in the core's table:
/// options and keys raise `ConfigurationError`, contexts `InvalidContextError`, the runtime
/// `ClientStartError`, bugs `InternalError`, other bad arguments Python's own `ValueError`
/// or `TypeError`.
pub(crate) fn to_py(failure: Failure) -> PyErr {
    let message = failure.message;
    match failure.code {
        ErrorCode::InvalidOptions | ErrorCode::InvalidKey | ErrorCode::InvalidEndpoint => {
            ConfigurationError::new_err(message)
        }
        ErrorCode::InvalidContext => InvalidContextError::new_err(message),
        ErrorCode::Runtime => ClientStartError::new_err(message),
        ErrorCode::Internal => InternalError::new_err(message),
        ErrorCode::NullArgument => PyTypeError::new_err(message),
        ErrorCode::InvalidArgument | ErrorCode::InvalidJson | ErrorCode::InvalidUtf8 => {
            PyValueError::new_err(message)
        }
        ErrorCode::InCallback | ErrorCode::Closed => VexilError::new_err(message),
    }
}

/// Times `iterations` calls of the core's `bool_variation` in Rust, for the benchmark's
/// ratio (seconds in total). Not part of the public API.
#[pyfunction]
fn _bench_rust_bool_variation(
    client: &Bound<'_, client::Client>,
    flag_key: &str,
    context: &Bound<'_, context::Context>,
    default: bool,
    iterations: u64,
) -> f64 {
    let (client, context) = (&client.get().inner, &context.get().inner);
    let started = std::time::Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(client.bool_variation(
            std::hint::black_box(flag_key),
            context,
            default,
        ));
    }
    started.elapsed().as_secs_f64()
}

/// Panics inside the guard every entry point uses, so that tests can check that a panic
/// reaches Python as `vexil.InternalError`. Not part of the public API.
#[pyfunction]
fn _panic_for_test() -> PyResult<()> {
    guard(|| -> PyResult<()> { panic!("a deliberate panic") })
}

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Status>()?;
    m.add_class::<client::EvaluationDetail>()?;
    m.add_class::<client::FlagChange>()?;
    m.add_class::<context::Context>()?;
    m.add_class::<test_data::TestData>()?;
    m.add("VexilError", py.get_type::<VexilError>())?;
    m.add("ConfigurationError", py.get_type::<ConfigurationError>())?;
    m.add("InvalidContextError", py.get_type::<InvalidContextError>())?;
    m.add("ClientStartError", py.get_type::<ClientStartError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add_function(wrap_pyfunction!(_bench_rust_bool_variation, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    Ok(())
}
