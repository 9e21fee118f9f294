//! Hidden helpers for the benchmark and the tests (not part of the typed API).

use std::time::Instant;

use napi::bindgen_prelude::Unknown;
use napi::{Env, JsValue};
use napi_derive::napi;

use crate::client::Client;
use crate::context::required_context;
use crate::error::{Result, guard, invalid_argument};
use crate::js::Js;

/// Times `iterations` calls of `bool_variation` on the Rust client behind `client`, with
/// the same flag and context: the engine's own cost, to compare with the same call made
/// from JavaScript. Returns nanoseconds per call.
#[napi(js_name = "__benchRustBoolVariation", skip_typescript)]
pub fn bench_rust_bool_variation(
    env: Env,
    client: &Client,
    flag_key: String,
    context: Unknown,
    iterations: u32,
) -> Result<f64> {
    guard(|| {
        if iterations == 0 {
            return Err(invalid_argument("iterations", "must be at least 1"));
        }
        let context = required_context(Js { env: env.raw() }, context.raw(), "context")?;
        let core = client.core();
        let mut served = 0u32;
        let started = Instant::now();
        for _ in 0..iterations {
            served += u32::from(std::hint::black_box(core.bool_variation(
                std::hint::black_box(&flag_key),
                std::hint::black_box(&context),
                false,
            )));
        }
        let elapsed = started.elapsed();
        std::hint::black_box(served);
        Ok(elapsed.as_nanos() as f64 / f64::from(iterations))
    })
}

/// Panics inside an entry point, to show that a panic becomes a `VEXIL_PANIC` exception.
#[napi(js_name = "__panicForTest", skip_typescript)]
pub fn panic_for_test(message: String) -> Result<()> {
    guard(|| -> Result<()> { std::panic::panic_any(message) })
}
