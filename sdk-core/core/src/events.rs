//! The event pipeline: exposures (deduplicated), `track` events and evaluation summaries,
//! queued in memory (bounded, drops counted) and sent in batches to
//! `EventService.Publish`, gzip-compressed, with a batch id kept across retries so that the
//! server never counts a batch twice.
//!
//! The caller's thread only pushes onto the queue (a short lock) or counts in its own
//! counters; converting to messages and sending happen on the client's background runtime.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::cell::OnceCell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use vexil_engine::Context;
use vexil_proto::v1 as pb;
use vexil_proto::v1::event_service_client::EventServiceClient;

use crate::config::EventConfig;
use crate::data::{Data, now_millis};
use crate::summaries::{CounterTable, Outcome, Summaries, add_outcome};

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

/// Counters per page of a thread's counters.
const PAGE: usize = 64;

/// Outcomes up to which a thread's counters are one array made at once (16 bytes each: 32 KiB
/// at most), rather than pages made when first counted in: one pointer fewer to follow
/// before the store, for the rulesets most applications have.
const FLAT_OUTCOMES: usize = 2048;

/// Adds one to a counter only its thread writes: a load and a store, no read-modify-write.
#[inline(always)]
fn bump(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// A page of one thread's counters and what the sender read of them last.
struct Page {
    /// Written by the owning thread only: a load and a store, no read-modify-write.
    counts: [AtomicU64; PAGE],
    /// Read and written by the drain only, under the queue's lock.
    seen: [AtomicU64; PAGE],
}

/// One thread's evaluation counters for one ruleset (see `held`), numbered like
/// [`CounterTable`]: the thread that owns them counts with a plain load and store, and the
/// sender sends the difference from what it read last time. A small ruleset's counters are
/// one array; a larger one's are pages allocated when first counted in, so that a thread pays
/// only for the flags it evaluates. When the thread moves to newer data (or exits) it drops
/// them; the next drain reads them one last time and forgets them, so no count is lost.
pub(crate) struct LocalCounters {
    data: Arc<Data>,
    /// Every outcome's counter when there are at most [`FLAT_OUTCOMES`]; empty otherwise.
    /// Written by the owning thread only.
    flat: Box<[AtomicU64]>,
    /// What the sender read of `flat` last (drain only).
    flat_seen: Box<[AtomicU64]>,
    /// The counters of a larger ruleset, by page.
    pages: Box<[OnceLock<Box<Page>>]>,
    /// How many outcomes there are (the last page has room for more).
    outcomes: usize,
    /// The outcome this thread counted last (`usize::MAX` before the first) and its counter
    /// (null before the first), always one of this value's own counters: see
    /// [`LocalCounters::add`]. Read and written by the owning thread only.
    last: AtomicUsize,
    last_counter: AtomicPtr<AtomicU64>,
}

impl std::fmt::Debug for LocalCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCounters")
            .field("version", &self.data.version())
            .field("flat", &self.flat.len())
            .field("pages", &self.pages.len())
            .finish_non_exhaustive()
    }
}

impl LocalCounters {
    fn new(data: Arc<Data>, outcomes: usize) -> LocalCounters {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        if outcomes <= FLAT_OUTCOMES {
            LocalCounters {
                data,
                flat: zeros(outcomes),
                flat_seen: zeros(outcomes),
                pages: Box::new([]),
                outcomes,
                last: AtomicUsize::new(usize::MAX),
                last_counter: AtomicPtr::new(std::ptr::null_mut()),
            }
        } else {
            LocalCounters {
                data,
                flat: Box::new([]),
                flat_seen: Box::new([]),
                pages: (0..outcomes.div_ceil(PAGE))
                    .map(|_| OnceLock::new())
                    .collect(),
                outcomes,
                last: AtomicUsize::new(usize::MAX),
                last_counter: AtomicPtr::new(std::ptr::null_mut()),
            }
        }
    }

    /// Counts one evaluation that served outcome `number`; false when there is no such
    /// outcome.
    ///
    /// `number` is known only when the evaluation ends, and a store whose address waits for
    /// it held back the next calls (2 to 3 ns a call in some code layouts). When the thread
    /// counts the same outcome as last time, the store goes to `last_counter`, read when
    /// the call began: its address is then ready long before the evaluation ends, and only
    /// the (predicted) comparison with `last` waits for it.
    #[inline(always)]
    fn add(&self, number: usize) -> bool {
        if number == self.last.load(Ordering::Relaxed) {
            let last = self.last_counter.load(Ordering::Relaxed);
            // SAFETY: non-null, it was made below from a counter in `self.flat` or in one of
            // `self.pages`, which are never moved or freed while `self` lives.
            if let Some(counter) = unsafe { last.as_ref() } {
                bump(counter);
                return true;
            }
        }
        let counter = match self.flat.get(number) {
            Some(counter) => counter,
            None if number >= self.outcomes => return false,
            None => match self.pages.get(number / PAGE) {
                Some(page) => match page.get() {
                    Some(page) => &page.counts[number % PAGE],
                    None => &Self::new_page(page).counts[number % PAGE],
                },
                None => return false,
            },
        };
        self.last.store(number, Ordering::Relaxed);
        self.last_counter
            .store(std::ptr::from_ref(counter).cast_mut(), Ordering::Relaxed);
        bump(counter);
        true
    }

    #[cold]
    #[inline(never)]
    fn new_page(page: &OnceLock<Box<Page>>) -> &Page {
        page.get_or_init(|| {
            Box::new(Page {
                counts: [const { AtomicU64::new(0) }; PAGE],
                seen: [const { AtomicU64::new(0) }; PAGE],
            })
        })
    }

    /// The counter of outcome `number` and what the sender read of it last, if it exists
    /// (a page not yet counted in has none).
    fn counter_and_seen(&self, number: usize) -> Option<(&AtomicU64, &AtomicU64)> {
        match (self.flat.get(number), self.flat_seen.get(number)) {
            (Some(count), Some(seen)) => Some((count, seen)),
            _ => {
                let page = self.pages.get(number / PAGE)?.get()?;
                Some((&page.counts[number % PAGE], &page.seen[number % PAGE]))
            }
        }
    }

    /// Adds what was counted since the last drain into `into`.
    fn drain(&self, into: &mut HashMap<String, HashMap<Outcome, u64>>) {
        let Data::Ruleset { ruleset, .. } = &*self.data else {
            return;
        };
        for index in 0..ruleset.flag_count() {
            let outcomes = ruleset.flag_outcomes(index);
            let start = outcomes.start;
            for number in outcomes {
                let Some((count, seen)) = self.counter_and_seen(number) else {
                    continue;
                };
                let now = count.load(Ordering::Relaxed);
                let before = seen.load(Ordering::Relaxed);
                if now == before {
                    continue;
                }
                seen.store(now, Ordering::Relaxed);
                if let Some((key, Some(flag))) = ruleset.flag_at(index) {
                    add_outcome(into, key, flag, number - start, now.wrapping_sub(before));
                }
            }
        }
    }
}

/// Recently sent exposures, for deduplication: bounded in size and in time.
#[derive(Debug, Default)]
struct ExposureMemory {
    seen: HashMap<u64, Instant>,
    order: VecDeque<u64>,
}

/// Counters of the pipeline, for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Every ruleset data whose counters hold counts, drained into each batch: the current
    /// one, and older ones until no evaluation can still be counting on them.
    counted: Mutex<Vec<Arc<Data>>>,
    /// Every thread's counters (see [`LocalCounters`]), until drained after their thread let
    /// go of them.
    local: Mutex<Vec<Arc<LocalCounters>>>,
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
            counted: Mutex::new(Vec::new()),
            local: Mutex::new(Vec::new()),
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

    /// Whether evaluations are counted for the summaries.
    #[inline]
    pub(crate) fn counts_summaries(&self) -> bool {
        self.config.enabled && self.config.summaries
    }

    /// The shared counter table of ruleset data, made (and registered for draining) on first
    /// use; `None` for other data.
    fn shared_table<'d>(&self, data: &'d Arc<Data>) -> Option<&'d CounterTable> {
        let Data::Ruleset {
            ruleset, counters, ..
        } = &**data
        else {
            return None;
        };
        Some(counters.0.get_or_init(|| {
            lock(&self.counted).push(Arc::clone(data));
            CounterTable::new(ruleset)
        }))
    }

    /// Counts a successful evaluation of `data`'s ruleset that served outcome `number` (see
    /// [`CounterTable`]), without a lock. Returns false when it could not (not ruleset data,
    /// or no such outcome): the caller then counts it with [`EventQueue::count`].
    #[inline]
    pub(crate) fn count_at(&self, data: &Arc<Data>, number: usize) -> bool {
        let Some(table) = self.shared_table(data) else {
            return false;
        };
        match table.counts.get(number) {
            Some(counter) => {
                counter.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Counts a successful evaluation like [`EventQueue::count_at`], in the calling thread's
    /// own counters for `data` (made and registered on its first count).
    #[inline(always)]
    pub(crate) fn count_local(
        &self,
        local: &OnceCell<Arc<LocalCounters>>,
        data: &Arc<Data>,
        number: usize,
    ) -> bool {
        match local.get() {
            Some(counters) => counters.add(number),
            None => self.count_local_first(local, data, number),
        }
    }

    /// [`EventQueue::count_local`] on a thread's first count for `data`.
    #[cold]
    #[inline(never)]
    fn count_local_first(
        &self,
        local: &OnceCell<Arc<LocalCounters>>,
        data: &Arc<Data>,
        number: usize,
    ) -> bool {
        let Some(table) = self.shared_table(data) else {
            return false;
        };
        let made = Arc::new(LocalCounters::new(Arc::clone(data), table.counts.len()));
        lock(&self.local).push(Arc::clone(&made));
        local.get_or_init(|| made).add(number)
    }

    /// Counts one evaluation for the summaries, under a lock (errors, remote values).
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
    /// The next batch of a flush: a batch kept from a failed flush first, then at most
    /// `*queued` of the queued events (counted down) and, while `*summaries` is set (then
    /// cleared), the evaluation counts.
    fn next_batch(
        &self,
        sdk: &(String, String),
        queued: &mut usize,
        summaries: &mut bool,
    ) -> Option<pb::PublishRequest> {
        if let Some(retry) = lock(&self.retry).take() {
            return Some(retry);
        }
        let events: Vec<Event> = {
            let mut queue = lock(&self.queue);
            let n = queue.len().min(self.config.batch_size).min(*queued);
            *queued -= n;
            queue.drain(..n).collect()
        };
        let with_summaries = std::mem::take(summaries);
        let (start, mut counts) = if with_summaries {
            let mut summaries = lock(&self.summaries);
            let start = summaries.start;
            summaries.start = now_millis();
            (start, std::mem::take(&mut summaries.counts))
        } else {
            (0, HashMap::default())
        };
        if with_summaries {
            self.drain_counters(&mut counts);
        }
        if events.is_empty() && counts.is_empty() {
            return None;
        }
        let mut request = pb::PublishRequest {
            batch_id: batch_id(),
            sdk_name: sdk.0.clone(),
            sdk_version: sdk.1.clone(),
            ..Default::default()
        };
        let wire_context = |context: &Context| {
            vexil_proto::model::json_to_context(&context.to_redacted_json(&self.config.redaction))
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
                    context: wire_context(&context),
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
                    context: wire_context(&context),
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

    /// Moves the lock-free counters of every counted ruleset into `counts`, and forgets the
    /// rulesets nothing else holds any more (replaced, and no evaluation still on them: the
    /// strong count is read before draining, so a count cannot land after the last drain).
    fn drain_counters(&self, counts: &mut HashMap<String, HashMap<Outcome, u64>>) {
        lock(&self.local).retain(|local| {
            let let_go = Arc::strong_count(local) == 1;
            if let_go {
                // Pairs with the release of the owner's reference: its last counts are seen.
                fence(Ordering::Acquire);
            }
            local.drain(counts);
            !let_go
        });
        let mut counted = lock(&self.counted);
        counted.retain(|data| {
            let last_holder = Arc::strong_count(data) == 1;
            if let Data::Ruleset {
                ruleset, counters, ..
            } = &**data
                && let Some(table) = counters.0.get()
            {
                table.drain(ruleset, counts);
            }
            !last_holder
        });
    }

    /// Sends everything pending when it begins (a batch kept from a failed flush, the queued
    /// events, the evaluation counts); a batch that fails every attempt is kept (with its id)
    /// for the next flush. Returns whether everything was sent. Events queued and evaluations
    /// counted meanwhile wait for the next flush: under steady traffic there is always more,
    /// and a flush that took it too would never end.
    pub(crate) async fn flush(
        &self,
        client: &mut EventServiceClient<Channel>,
        sdk_key: &str,
        sdk: &(String, String),
    ) -> bool {
        let mut queued = lock(&self.queue).len();
        let mut summaries = true;
        while let Some(batch) = self.next_batch(sdk, &mut queued, &mut summaries) {
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
                // Without a key a header can carry, the server refuses the batch.
                let _ = vexil_proto::authorize(&mut request, sdk_key);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summaries::{SummaryCounters, outcome_number};
    use vexil_engine::Ruleset;

    fn ruleset_data(flags: usize) -> Arc<Data> {
        let flags: Vec<_> = (0..flags)
            .map(|i| {
                serde_json::json!({"key": format!("f{i:05}"), "kind": "bool",
                    "variations": [true, false], "on": true, "fallthrough": {"variation": 1}})
            })
            .collect();
        let text = serde_json::json!({"version": 1, "flags": flags}).to_string();
        Arc::new(Data::Ruleset {
            ruleset: Ruleset::from_json(&text).unwrap_or_else(|err| panic!("{err}")),
            version: 1,
            source: crate::data::Source::Bootstrap,
            received_at: 0,
            counters: SummaryCounters::default(),
        })
    }

    /// Counts `calls` of (flag, variation) in fresh counters, drains twice with more counts
    /// in between, and checks every count, in whichever layout the size gives.
    fn counts_and_drains(flags: usize, flat: bool) {
        let data = ruleset_data(flags);
        let Data::Ruleset { ruleset, .. } = &*data else {
            unreachable!()
        };
        let counters = LocalCounters::new(data.clone(), ruleset.outcome_count());
        assert_eq!(!counters.flat.is_empty(), flat);
        let last = flags - 1;
        // Runs of one outcome (counted through the last one's counter) and changes between.
        let calls = [
            (0, Some(1), 3),
            (last, Some(0), 2),
            (0, Some(1), 1),
            (last, None, 1),
        ];
        for &(index, variation, times) in &calls {
            let number = outcome_number(ruleset, index, variation).unwrap_or(usize::MAX);
            for _ in 0..times {
                assert!(counters.add(number));
            }
        }
        assert!(!counters.add(ruleset.outcome_count()), "no such outcome");
        let mut drained = HashMap::default();
        counters.drain(&mut drained);
        let count = |drained: &HashMap<String, HashMap<Outcome, u64>>, index, variation| {
            let key = format!("f{index:05}");
            let outcome = Outcome {
                flag_version: 0,
                variation,
                error_kind: 0,
            };
            drained
                .get(&key)
                .and_then(|by| by.get(&outcome))
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(count(&drained, 0, Some(1)), 4);
        assert_eq!(count(&drained, last, Some(0)), 2);
        assert_eq!(count(&drained, last, None), 1);
        assert_eq!(drained.len(), 2, "{drained:?}");
        // The next drain sends only what was counted since.
        let number = outcome_number(ruleset, 0, Some(1)).unwrap_or(usize::MAX);
        assert!(counters.add(number));
        let mut again = HashMap::default();
        counters.drain(&mut again);
        assert_eq!(count(&again, 0, Some(1)), 1);
        assert_eq!(again.len(), 1, "{again:?}");
    }

    #[test]
    fn a_small_rulesets_counters_are_one_array() {
        counts_and_drains(10, true);
    }

    #[test]
    fn a_large_rulesets_counters_are_pages() {
        // Three outcomes a flag: past the flat limit.
        counts_and_drains(FLAT_OUTCOMES / 3 + 10, false);
    }
}
