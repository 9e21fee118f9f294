//! Test support for Vexil, shared by every Rust test that needs a real server.
//!
//! * [`TestDatabase`]: a fresh database for one test, SQLite in a temporary folder or a
//!   database of its own on the test Postgres, removed afterwards.
//! * [`TestServer`]: a real `vexil-server` in process on loopback ports, with its credentials,
//!   its storage and clients for its services; it can be killed and restarted on the same
//!   port and data. [`BlockingServer`] is the same on a runtime of its own, for synchronous
//!   tests.
//! * [`Cluster`]: several servers sharing one database (and, through their live settings,
//!   one Redis); [`PrivateRedis`]: a `redis-server` the test can stop and restart;
//!   [`PrivateRedisCluster`]: a three-primary Redis Cluster whose nodes the test can kill;
//!   [`ReplicatedPostgres`]: a Postgres primary and streaming replica the test can make lag
//!   or disappear.
//! * [`http_get`], [`http_request`]: a minimal HTTP/1.1 client for the server's HTTP port
//!   and for gRPC-web.
//! * Small functions: [`authed`], [`expect_code`], [`eventually`], [`eventually_blocking`],
//!   [`unique`], and flag set-up ([`create_bool_flag`], [`create_experiment_flag`],
//!   [`toggle`]).
//!
//! Postgres is not optional: without `VEXIL_TEST_DATABASE_URL` a test asking for it fails,
//! unless `VEXIL_TEST_SKIP_POSTGRES=1` says to skip it (the constructor then returns `None`).
//! `eval "$(scripts/services.sh start)"` starts a test Postgres and Redis and exports the
//! variables.
//!
//! The suites that use this crate live in its `tests/` folder: they need `vexil-server` and
//! `vexil-core` together, which neither of those packages may depend on for its own tests.

mod cluster;
mod database;
mod environments;
mod flags;
mod http;
mod metrics;
mod process;
mod redis;
mod redis_cluster;
mod replica;
mod server;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tonic::{Code, Request, Status};

pub use cluster::Cluster;
pub use database::{TestDatabase, drop_postgres_database};
pub use environments::create_environment;
pub use flags::{
    bool_flag_request, config_version, create_bool_flag, create_experiment_flag, flag_resource,
    halves, toggle, try_toggle,
};
pub use http::{HttpResponse, http_get, http_request};
pub use metrics::{metric, results_request};
pub use process::{ChildProcess, ServerProcess, free_address};
pub use redis::PrivateRedis;
pub use redis_cluster::{ClusterNode, PrivateRedisCluster};
pub use replica::ReplicatedPostgres;
pub use server::{BlockingServer, ServerOptions, TestServer};

/// The project a server creates at its first start.
pub const PROJECT: &str = "default";
/// The environment of [`PROJECT`] the flag set-up works in (the first start also creates
/// `development`).
pub const ENV: &str = "production";

/// How often [`eventually`] and [`eventually_blocking`] check again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A name no other test of this run uses: `prefix`, the process id and a counter.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A request carrying `secret` (an admin token or an SDK key) as its bearer credential.
pub fn authed<T>(message: T, secret: &str) -> Request<T> {
    let mut request = Request::new(message);
    vexil_proto::authorize(&mut request, secret).expect("ascii metadata");
    request
}

/// Asserts that a call failed with `code`; returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got a success: {value:?}"),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "unexpected status: {}",
                status.message()
            );
            status
        }
    }
}

/// Asserts that a call failed with `code` and a message that holds `part`: a `&str` anywhere
/// in it, or [`StartsWith`] at its start; returns the status.
#[track_caller]
pub fn expect_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    part: impl MessagePart,
) -> Status {
    let status = expect_code(result, code);
    assert!(
        part.is_in(status.message()),
        "expected a message with {part:?}: {}",
        status.message()
    );
    status
}

/// What [`expect_error`] looks for in a message.
pub trait MessagePart: std::fmt::Debug {
    fn is_in(&self, message: &str) -> bool;
}

impl MessagePart for &str {
    fn is_in(&self, message: &str) -> bool {
        message.contains(self)
    }
}

/// The start of a message: the field it names, as `field: …`.
#[derive(Debug)]
pub struct StartsWith<'a>(pub &'a str);

impl MessagePart for StartsWith<'_> {
    fn is_in(&self, message: &str) -> bool {
        message.starts_with(self.0)
    }
}

/// Polls the asynchronous `check` until it holds; panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `check`, a plain call that may block briefly (an SDK method), until it holds;
/// panics naming `what` after `timeout`. The waits between checks are asynchronous, so a
/// server on the same runtime keeps running.
pub async fn eventually_blocking(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    eventually(timeout, what, || std::future::ready(check())).await;
}
