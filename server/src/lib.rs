//! Vexil's server: the gRPC services over a storage of Postgres or SQLite.
//!
//! This crate is a binary (`vexil-server`) and a library, so that its parts can be tested
//! from the outside. [`storage`] keeps flags, segments, keys, tokens and the audit log.

pub mod storage;
