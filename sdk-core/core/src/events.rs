//! The event pipeline: exposures (deduplicated), `track` events and evaluation summaries,
//! queued in memory (bounded, drops counted) and sent in batches to
//! `EventService.Publish`, gzip-compressed, with a batch id kept across retries so that the
//! server never counts a batch twice.
//!
//! The caller's thread only pushes onto the queue (a short lock); converting to messages and
//! sending happen on the client's background runtime.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use vexil_engine::Context;
use vexil_proto::v1 as pb;
use vexil_proto::v1::event_service_client::EventServiceClient;

use crate::config::EventConfig;
use crate::data::now_millis;

/// An event waiting to be sent.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Exposure {
        time: i64,
        flag_key: String,
        flag_version: i64,
        experiment_key: String,
        variation: u32,
        context: Context,
        in_experiment: bool,
    },
    Track {
        time: i64,
        name: String,
        context: Context,
        value: Option<f64>,
    },
}

/// One evaluation outcome counted in a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Outcome {
    flag_version: i64,
    variation: Option<u32>,
    error_kind: i32,
}

#[derive(Debug, Default)]
struct Summaries {
    start: i64,
    /// Flag key → outcome → count.
    counts: HashMap<String, HashMap<Outcome, u64>>,
}

/// Recently sent exposures, for deduplication: bounded in size and in time.
#[derive(Debug, Default)]
struct ExposureMemory {
    seen: HashMap<u64, Instant>,
    order: VecDeque<u64>,
}

/// Counters of the pipeline, for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Events the server accepted.
    pub sent: u64,
    /// Batches that failed every attempt (kept for the next flush, or dropped when full).
    pub failed_batches: u64,
    /// Events waiting now.
    pub queued: u64,
}

#[derive(Debug)]
pub(crate) struct EventQueue {
    config: EventConfig,
    queue: Mutex<VecDeque<Event>>,
    summaries: Mutex<Summaries>,
    exposures: Mutex<ExposureMemory>,
    /// A batch that failed every attempt, resent (same id) before anything else.
    retry: Mutex<Option<pb::PublishRequest>>,
    dropped: AtomicU64,
    sent: AtomicU64,
    failed_batches: AtomicU64,
    /// Wakes the sender when a batch is full.
    pub(crate) full: tokio::sync::Notify,
}

impl EventQueue {
    pub(crate) fn new(config: EventConfig) -> EventQueue {
        EventQueue {
            config,
            queue: Mutex::new(VecDeque::new()),
            summaries: Mutex::new(Summaries {
                start: now_millis(),
                counts: HashMap::default(),
            }),
            exposures: Mutex::new(ExposureMemory::default()),
            retry: Mutex::new(None),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            full: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub(crate) fn stats(&self) -> EventStats {
        EventStats {
            dropped: self.dropped.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            queued: lock(&self.queue).len() as u64,
        }
    }

    /// Queues an event, or drops and counts it when the queue is full.
    pub(crate) fn push(&self, event: Event) {
        if !self.config.enabled {
            return;
        }
        let mut queue = lock(&self.queue);
        let held = queue.len() + usize::from(lock(&self.retry).is_some()) * self.config.batch_size;
        if held >= self.config.capacity {
            drop(queue);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.push_back(event);
        let full = queue.len() >= self.config.batch_size;
        drop(queue);
        if full {
            self.full.notify_one();
        }
    }

    /// Queues an exposure unless the same context, flag and variation was exposed within the
    /// window.
    pub(crate) fn expose(
        &self,
        flag_key: &str,
        flag_version: i64,
        experiment_key: &str,
        variation: u32,
        in_experiment: bool,
        context: &Context,
    ) {
        if !self.config.enabled {
            return;
        }
        let mut hasher = rustc_hash::FxHasher::default();
        for part in context.parts() {
            part.kind().hash(&mut hasher);
            part.key().hash(&mut hasher);
        }
        flag_key.hash(&mut hasher);
        variation.hash(&mut hasher);
        let fingerprint = hasher.finish();
        let now = Instant::now();
        {
            let mut memory = lock(&self.exposures);
            if let Some(at) = memory.seen.get(&fingerprint)
                && now.duration_since(*at) < self.config.exposure_window
            {
                return;
            }
            if memory.seen.insert(fingerprint, now).is_none() {
                memory.order.push_back(fingerprint);
            }
            while memory.order.len() > self.config.exposure_memory.max(1) {
                if let Some(oldest) = memory.order.pop_front() {
                    memory.seen.remove(&oldest);
                }
            }
        }
        self.push(Event::Exposure {
            time: now_millis(),
            flag_key: flag_key.to_owned(),
            flag_version,
            experiment_key: experiment_key.to_owned(),
            variation,
            context: context.clone(),
            in_experiment,
        });
    }

    /// Counts one evaluation for the summaries.
    pub(crate) fn count(
        &self,
        flag_key: &str,
        flag_version: i64,
        variation: Option<u32>,
        error_kind: i32,
    ) {
        if !self.config.enabled || !self.config.summaries {
            return;
        }
        let outcome = Outcome {
            flag_version,
            variation,
            error_kind,
        };
        let mut summaries = lock(&self.summaries);
        match summaries.counts.get_mut(flag_key) {
            Some(counts) => *counts.entry(outcome).or_insert(0) += 1,
            None => {
                summaries
                    .counts
                    .insert(flag_key.to_owned(), HashMap::from_iter([(outcome, 1)]));
            }
        }
    }

    /// The next batch: the one to retry, else up to `batch_size` queued events and the
    /// summaries counted since the last batch.
    fn next_batch(&self, sdk: &(String, String)) -> Option<pb::PublishRequest> {
        if let Some(retry) = lock(&self.retry).take() {
            return Some(retry);
        }
        let events: Vec<Event> = {
            let mut queue = lock(&self.queue);
            let n = queue.len().min(self.config.batch_size);
            queue.drain(..n).collect()
        };
        let (start, counts) = {
            let mut summaries = lock(&self.summaries);
            let start = summaries.start;
            summaries.start = now_millis();
            (start, std::mem::take(&mut summaries.counts))
        };
        if events.is_empty() && counts.is_empty() {
            return None;
        }
        let mut request = pb::PublishRequest {
            batch_id: batch_id(),
            sdk_name: sdk.0.clone(),
            sdk_version: sdk.1.clone(),
            ..Default::default()
        };
        for event in events {
            match event {
                Event::Exposure {
                    time,
                    flag_key,
                    flag_version,
                    experiment_key,
                    variation,
                    context,
                    in_experiment,
                } => request.exposures.push(pb::ExposureEvent {
                    time: Some(timestamp(time)),
                    flag_key,
                    flag_version,
                    experiment_key,
                    variation,
                    context: vexil_proto::json::json_to_context(&context.to_json()),
                    in_experiment,
                }),
                Event::Track {
                    time,
                    name,
                    context,
                    value,
                } => request.track_events.push(pb::TrackEvent {
                    time: Some(timestamp(time)),
                    name,
                    context: vexil_proto::json::json_to_context(&context.to_json()),
                    value,
                    data: None,
                }),
            }
        }
        let end = now_millis();
        let mut flags: Vec<_> = counts.into_iter().collect();
        flags.sort_by(|a, b| a.0.cmp(&b.0));
        for (flag_key, outcomes) in flags {
            request.summaries.push(pb::EvaluationSummary {
                start: Some(timestamp(start)),
                end: Some(timestamp(end)),
                flag_key,
                counters: outcomes
                    .into_iter()
                    .map(|(o, count)| pb::EvaluationCounter {
                        flag_version: o.flag_version,
                        variation: o.variation,
                        error_kind: o.error_kind,
                        count,
                    })
                    .collect(),
            });
        }
        Some(request)
    }

    /// Sends everything pending; a batch that fails every attempt is kept (with its id) for
    /// the next flush. Returns whether everything was sent.
    pub(crate) async fn flush(
        &self,
        client: &mut EventServiceClient<Channel>,
        sdk_key: &str,
        sdk: &(String, String),
    ) -> bool {
        while let Some(batch) = self.next_batch(sdk) {
            let events =
                (batch.exposures.len() + batch.track_events.len() + batch.summaries.len()) as u64;
            let mut delay = Duration::from_millis(200);
            let mut sent = false;
            for attempt in 0..self.config.attempts.max(1) {
                if attempt > 0 {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                let mut request = tonic::Request::new(batch.clone());
                request.set_timeout(Duration::from_secs(10));
                if let Ok(value) = format!("Bearer {sdk_key}").parse() {
                    request.metadata_mut().insert("authorization", value);
                }
                match client.publish(request).await {
                    Ok(_) => {
                        sent = true;
                        break;
                    }
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::InvalidArgument
                                | tonic::Code::Unauthenticated
                                | tonic::Code::PermissionDenied
                        ) =>
                    {
                        // Retrying cannot help: drop the batch and say so.
                        tracing::warn!(status = %status, events, "event batch refused; dropped");
                        self.dropped.fetch_add(events, Ordering::Relaxed);
                        sent = true;
                        break;
                    }
                    Err(status) => {
                        tracing::debug!(status = %status, attempt, "event batch not sent");
                    }
                }
            }
            if sent {
                self.sent.fetch_add(events, Ordering::Relaxed);
            } else {
                self.failed_batches.fetch_add(1, Ordering::Relaxed);
                *lock(&self.retry) = Some(batch);
                return false;
            }
        }
        true
    }
}

/// An event client sending gzip-compressed batches.
pub(crate) fn client(channel: Channel) -> EventServiceClient<Channel> {
    EventServiceClient::new(channel).send_compressed(CompressionEncoding::Gzip)
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// A random batch id (128 bits, hex).
fn batch_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness, time and a counter still make ids unique in this process.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        return format!(
            "{:x}-{:x}-{:x}",
            now_millis(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
    }
    hex::encode(bytes)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
