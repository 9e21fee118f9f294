//! The gRPC services, one module each.

pub mod admin;
pub mod evaluation;
pub mod events;
mod streams;
pub mod sync;
