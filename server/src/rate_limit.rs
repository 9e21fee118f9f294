//! Per-admin-token request rate limits: a token bucket per token id, so that one runaway
//! script cannot take an instance's admin capacity (or its database) from everyone else. A
//! call over the limit is refused with `RESOURCE_EXHAUSTED`, saying when to retry.
//!
//! The limit is per instance: N instances behind a balancer allow up to N times the rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::Status;

/// Buckets remembered at most; beyond, the idle ones (full again) are forgotten.
const MAX_BUCKETS: usize = 100_000;

/// How fast one admin token may call, and how far it may burst above that.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdminRateLimit {
    /// Sustained requests per second; 0 turns the limit off.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: f64,
}

impl Default for AdminRateLimit {
    /// 100 requests per second with bursts of 1,000: far above what people and CI scripts
    /// send, far below what a loop with no pause sends.
    fn default() -> AdminRateLimit {
        AdminRateLimit {
            per_second: 100.0,
            burst: 1_000.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The buckets of every admin token seen by this instance.
#[derive(Debug)]
pub struct RateLimiter {
    limit: AdminRateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: AdminRateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the bucket of token `id` at `now`, or says when to retry.
    pub fn check(&self, id: &str, now: Instant) -> Result<(), Status> {
        let AdminRateLimit { per_second, burst } = self.limit;
        if per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(id) {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.refilled).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(id.to_owned()).or_insert(Bucket {
            tokens: burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / per_second);
        Err(Status::resource_exhausted(format!(
            "admin token {id} is over its rate limit ({per_second} requests per second, bursts of {burst}); retry in {} ms",
            wait.as_millis().max(1)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: f64) -> RateLimiter {
        RateLimiter::new(AdminRateLimit { per_second, burst })
    }

    #[test]
    fn a_burst_is_allowed_then_the_rate_and_tokens_are_apart() {
        let limiter = limiter(10.0, 3.0);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check("a", start).unwrap();
        }
        let refused = limiter.check("a", start).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("retry in 100 ms"),
            "{}",
            refused.message()
        );
        // Another token has its own bucket.
        limiter.check("b", start).unwrap();
        // A tenth of a second later, one more request.
        let later = start + Duration::from_millis(100);
        limiter.check("a", later).unwrap();
        assert!(limiter.check("a", later).is_err());
        // The bucket never holds more than the burst.
        let much_later = start + Duration::from_secs(60);
        for _ in 0..3 {
            limiter.check("a", much_later).unwrap();
        }
        assert!(limiter.check("a", much_later).is_err());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limiter = limiter(0.0, 0.0);
        let now = Instant::now();
        for _ in 0..10_000 {
            limiter.check("a", now).unwrap();
        }
    }
}
