//! The gRPC services, one module each.

pub mod admin;
pub mod evaluation;
pub mod events;
pub mod experiments;
mod streams;
pub mod sync;
