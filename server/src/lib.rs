//! Vexil's server: the gRPC services over a storage of Postgres or SQLite.
//!
//! This crate is a binary (`vexil-server`) and a library, so that its parts can be tested
//! from the outside. [`storage`] keeps flags, segments, keys, tokens and the audit log;
//! [`services`] serves them over gRPC, [`auth`] says who is calling, [`convert`] maps the
//! wire messages to the stored records and the engine's JSON, and [`server`] puts it all
//! together.

pub mod auth;
pub mod browser;
pub mod convert;
pub mod experiment_results;
pub mod http;
pub mod key_view;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod middleware;
pub mod ofrep;
pub mod origins;
pub mod overload;
pub mod rate_limit;
pub mod ruleset_changes;
pub mod sdk_auth;
pub mod server;
pub mod services;
pub mod status;
pub mod storage;
pub mod versions;
