//! `@vexil/node`: the Node SDK's native addon (napi-rs) over `vexil-core`.
//!
//! The exported classes are the package's API as JavaScript sees it; `index.d.ts` is
//! generated from these declarations by `napi build`. Each entry point converts values and
//! errors and calls `vexil-core`: nothing here evaluates, caches or retries. Every entry
//! point runs inside [`error::guard`], so that a panic becomes a JavaScript exception
//! (`code: 'VEXIL_PANIC'`) instead of aborting the process.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod bench;
mod client;
mod context;
mod error;
mod fast;
mod js;
mod logging;
mod test_data;

pub use client::{
    Client, ClientStatus, EvaluationDetail, EvaluationReason, EventStats, FlagChange,
};
pub use context::Context;
pub use error::ErrorCode;
pub use test_data::TestData;
