//! The gRPC services, one module each.

pub mod admin;
pub mod evaluation;
mod streams;
pub mod sync;
