//! What an instance does when asked for more than it can do: it refuses the excess at once,
//! cheaply and with a status that says so (`RESOURCE_EXHAUSTED`), rather than queueing
//! without bound until latency, memory or HTTP/2 keep-alive timeouts give way.
//!
//! * Calls in flight: at most `max_inflight_requests` unary calls are being served at once;
//!   one more is refused before it is decoded. Streams (Watch, Sync) are not counted here,
//!   since they stay open: they have limits of their own. Health checks and reflection are
//!   never refused, so that an overloaded instance still says it is alive.
//! * Streams: at most `max_streams` open on the instance, and at most `max_streams_per_key`
//!   of them on one SDK key, so that one application (or a leaked key) cannot take every
//!   stream. SDKs treat the refusal like any failed connection: they keep their values and
//!   retry after a jittered, growing delay.
//!
//! Every limit is per instance; 0 turns it off. Refusals are counted in
//! `vexil_requests_shed_total` by reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;

use crate::metrics::Metrics;
use crate::middleware::{BoxFuture, Intercept, InterceptLayer};

/// Unary calls served at once by default: about a hundred times what an instance holds at
/// its measured peak of 70,000 evaluations a second with millisecond latencies, so that only
/// a flood reaches it.
pub const DEFAULT_MAX_INFLIGHT_REQUESTS: usize = 1024;

/// How many streams an instance keeps open (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// On the instance.
    pub total: usize,
    /// Of one SDK key.
    pub per_key: usize,
}

impl Default for StreamLimits {
    /// 100,000 streams (a few kilobytes each), 20,000 of one key.
    fn default() -> StreamLimits {
        StreamLimits {
            total: 100_000,
            per_key: 20_000,
        }
    }
}

/// The streams open on this instance, in total and per SDK key.
#[derive(Debug)]
pub struct StreamLimiter {
    limits: StreamLimits,
    metrics: Metrics,
    open: Mutex<OpenStreams>,
}

#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    per_key: HashMap<i64, usize>,
}

impl StreamLimiter {
    pub fn new(limits: StreamLimits, metrics: Metrics) -> Arc<StreamLimiter> {
        Arc::new(StreamLimiter {
            limits,
            metrics,
            open: Mutex::new(OpenStreams::default()),
        })
    }

    /// A place for one more stream of SDK key `key_id`, held until the slot is dropped; or
    /// `RESOURCE_EXHAUSTED` when the instance or the key has no more.
    pub fn open(self: &Arc<Self>, key_id: i64) -> Result<StreamSlot, Status> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let of_key = open.per_key.get(&key_id).copied().unwrap_or(0);
        let StreamLimits {
            total: max_streams,
            per_key: max_streams_per_key,
        } = self.limits;
        if max_streams > 0 && open.total >= max_streams {
            self.shed("streams");
            return Err(Status::resource_exhausted(format!(
                "this server instance has {max_streams} streams open, its most \
                 (--max-streams); retry later or on another instance"
            )));
        }
        if max_streams_per_key > 0 && of_key >= max_streams_per_key {
            self.shed("streams_per_key");
            return Err(Status::resource_exhausted(format!(
                "this SDK key has {max_streams_per_key} streams open on this server instance, \
                 its most (--max-streams-per-key); retry later"
            )));
        }
        open.total += 1;
        *open.per_key.entry(key_id).or_insert(0) += 1;
        Ok(StreamSlot {
            limiter: self.clone(),
            key_id,
        })
    }

    /// Streams open now: in total, and of one key.
    pub fn open_streams(&self, key_id: i64) -> (usize, usize) {
        let open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (open.total, open.per_key.get(&key_id).copied().unwrap_or(0))
    }

    fn shed(&self, reason: &str) {
        self.metrics
            .shed_requests
            .with_label_values(&[reason])
            .inc();
    }
}

/// One open stream's place, given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    limiter: Arc<StreamLimiter>,
    key_id: i64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_key.get_mut(&self.key_id) {
            *count -= 1;
            if *count == 0 {
                open.per_key.remove(&self.key_id);
            }
        }
    }
}

/// Whether a gRPC path is a call the in-flight limit leaves alone: the streams, which have
/// their own limits, and health checks and reflection, which must answer under load.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.")
        || path.starts_with("/grpc.reflection.")
        || path == "/vexil.v1.EvaluationService/Watch"
        || path == "/vexil.v1.SyncService/Sync"
}

/// Puts [`InflightLimit`] around the gRPC routes.
pub type InflightLayer = InterceptLayer<InflightLimit>;

/// Refuses a unary call at once when the instance already serves its most; see the module
/// documentation.
#[derive(Debug, Clone)]
pub struct InflightLimit {
    permits: Option<Arc<Semaphore>>,
    limit: usize,
    metrics: Metrics,
}

impl InflightLimit {
    /// At most `limit` calls in flight (0: no limit).
    pub fn new(limit: usize, metrics: Metrics) -> InflightLimit {
        InflightLimit {
            permits: (limit > 0).then(|| Arc::new(Semaphore::new(limit))),
            limit,
            metrics,
        }
    }
}

impl<S, B> Intercept<S, B> for InflightLimit
where
    S: tower::Service<Request<B>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    fn intercept(&self, inner: &mut S, request: Request<B>) -> BoxFuture<Response<Body>, S::Error> {
        let Some(permits) = &self.permits else {
            return Box::pin(inner.call(request));
        };
        if exempt(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let call = inner.call(request);
                Box::pin(async move {
                    let response = call.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => {
                self.metrics
                    .shed_requests
                    .with_label_values(&["inflight"])
                    .inc();
                let status = Status::resource_exhausted(format!(
                    "the server is overloaded ({} calls in flight, its most: \
                     --max-inflight-requests); retry after a short, growing delay",
                    self.limit
                ));
                let response = status.into_http();
                // An async block rather than `ready`: it holds no `S::Error`, which need
                // not be `Send`.
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(total: usize, per_key: usize) -> Arc<StreamLimiter> {
        StreamLimiter::new(StreamLimits { total, per_key }, Metrics::new())
    }

    #[test]
    fn streams_are_capped_per_key_and_in_total_and_given_back() {
        let streams = limiter(3, 2);
        let a1 = streams.open(1).unwrap();
        let _a2 = streams.open(1).unwrap();
        let refused = streams.open(1).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("--max-streams-per-key"));
        let _b1 = streams.open(2).unwrap();
        let refused = streams.open(3).unwrap_err();
        assert!(refused.message().contains("--max-streams)"), "{refused}");
        assert_eq!(streams.open_streams(1), (3, 2));
        drop(a1);
        assert_eq!(streams.open_streams(1), (2, 1));
        let _a3 = streams.open(1).unwrap();
    }

    #[test]
    fn zero_means_no_limit() {
        let streams = limiter(0, 0);
        let slots: Vec<StreamSlot> = (0..1000).map(|_| streams.open(7).unwrap()).collect();
        assert_eq!(streams.open_streams(7), (1000, 1000));
        drop(slots);
        assert_eq!(streams.open_streams(7), (0, 0));
    }

    #[test]
    fn streams_health_and_reflection_are_exempt_from_the_inflight_limit() {
        assert!(exempt("/vexil.v1.EvaluationService/Watch"));
        assert!(exempt("/vexil.v1.SyncService/Sync"));
        assert!(exempt("/grpc.health.v1.Health/Check"));
        assert!(exempt(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!exempt("/vexil.v1.EvaluationService/Evaluate"));
        assert!(!exempt("/vexil.v1.EventService/Publish"));
        assert!(!exempt("/vexil.v1.AdminService/CreateFlag"));
    }
}
