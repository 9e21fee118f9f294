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
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use vexil_engine::{Context, Ruleset};
use vexil_proto::v1 as pb;
use vexil_proto::v1::event_service_client::EventServiceClient;

use crate::config::EventConfig;
use crate::data::{Data, now_millis};

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

/// The evaluation counters of one ruleset: one per flag and variation, plus one per flag for
/// "no variation" (an off flag without an off variation). Counting is one relaxed atomic add
/// at a position found from the flag's index in the ruleset, so the hot path takes no lock
/// and hashes nothing; the sender drains the counters into the next batch. Created on the
/// first count, so that a client with summaries off never allocates them. Variation calls
/// count in their thread's own [`LocalCounters`] (which share this table's layout); this
/// table counts the calls that cannot (made inside another call on the same thread, or
/// while the thread exits), so that threads never write one counter in common.
#[derive(Debug, Default)]
pub(crate) struct SummaryCounters(OnceLock<CounterTable>);

#[derive(Debug)]
struct CounterTable {
    /// Flag `i` owns `counts[offsets[i]..offsets[i + 1]]`: slot 0 for no variation, slot
    /// `v + 1` for variation `v`.
    offsets: Arc<[u32]>,
    counts: Box<[AtomicU64]>,
}

impl CounterTable {
    fn new(ruleset: &Ruleset) -> CounterTable {
        let mut offsets = Vec::with_capacity(ruleset.flag_count() + 1);
        let mut total = 0u32;
        offsets.push(0);
        for index in 0..ruleset.flag_count() {
            let slots = ruleset
                .flag_at(index)
                .and_then(|(_, model)| model)
                .map_or(0, |flag| flag.variations.len() + 1);
            total = total.saturating_add(u32::try_from(slots).unwrap_or(u32::MAX));
            offsets.push(total);
        }
        CounterTable {
            offsets: offsets.into(),
            counts: (0..total).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The counter of a flag's outcome, if the table has one.
    #[inline]
    fn slot(&self, index: usize, variation: Option<usize>) -> Option<&AtomicU64> {
        self.counts
            .get(counter_position(&self.offsets, index, variation)?)
    }

    /// Moves every non-zero count into `into`, naming each by the ruleset's flag.
    fn drain(&self, ruleset: &Ruleset, into: &mut HashMap<String, HashMap<Outcome, u64>>) {
        for (index, bounds) in self.offsets.windows(2).enumerate() {
            let (start, end) = (bounds[0] as usize, bounds[1] as usize);
            let Some((key, Some(flag))) = ruleset.flag_at(index) else {
                continue;
            };
            for (slot, counter) in self.counts[start..end].iter().enumerate() {
                // A load first: most counters are zero, and a swap is a locked instruction.
                if counter.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let count = counter.swap(0, Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                add_outcome(into, key, flag, slot, count);
            }
        }
    }
}

/// Where the counter of a flag's outcome is in a ruleset's counter space (see
/// [`CounterTable`]), if the flag has one for that outcome.
#[inline]
fn counter_position(offsets: &[u32], index: usize, variation: Option<usize>) -> Option<usize> {
    let start = *offsets.get(index)? as usize;
    let end = *offsets.get(index + 1)? as usize;
    let slot = start + variation.map_or(0, |v| v + 1);
    (slot < end).then_some(slot)
}

/// Adds `count` evaluations of `flag` that served its counter `slot` (0: no variation).
fn add_outcome(
    into: &mut HashMap<String, HashMap<Outcome, u64>>,
    key: &str,
    flag: &vexil_engine::model::Flag,
    slot: usize,
    count: u64,
) {
    let outcome = Outcome {
        flag_version: i64::try_from(flag.version).unwrap_or(i64::MAX),
        variation: slot.checked_sub(1).and_then(|v| u32::try_from(v).ok()),
        error_kind: 0,
    };
    *into
        .entry(key.to_owned())
        .or_default()
        .entry(outcome)
        .or_insert(0) += count;
}

/// Counters per page of a thread's counters.
const PAGE: usize = 64;

/// A page of one thread's counters and what the sender read of them last.
struct Page {
    /// Written by the owning thread only: a load and a store, no read-modify-write.
    counts: [AtomicU64; PAGE],
    /// Read and written by the drain only, under the queue's lock.
    seen: [AtomicU64; PAGE],
}

/// One thread's evaluation counters for one ruleset (see `held`): the thread that owns
/// them counts with a plain load and store, and the sender sends the difference from what it
/// read last time. Pages are allocated when first counted in, so that a thread pays only for
/// the flags it evaluates. When the thread moves to newer data (or exits) it drops them; the
/// next drain reads them one last time and forgets them, so no count is lost.
pub(crate) struct LocalCounters {
    data: Arc<Data>,
    offsets: Arc<[u32]>,
    pages: Box<[OnceLock<Box<Page>>]>,
}

impl std::fmt::Debug for LocalCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCounters")
            .field("version", &self.data.version())
            .field("pages", &self.pages.len())
            .finish_non_exhaustive()
    }
}

impl LocalCounters {
    fn new(data: Arc<Data>, offsets: Arc<[u32]>) -> LocalCounters {
        let total = offsets.last().map_or(0, |&last| last as usize);
        LocalCounters {
            data,
            offsets,
            pages: (0..total.div_ceil(PAGE)).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts one evaluation; false when the ruleset has no such counter.
    #[inline]
    fn add(&self, index: usize, variation: Option<usize>) -> bool {
        let Some(slot) = counter_position(&self.offsets, index, variation) else {
            return false;
        };
        let Some(page) = self.pages.get(slot / PAGE) else {
            return false;
        };
        let page = page.get_or_init(|| {
            Box::new(Page {
                counts: [const { AtomicU64::new(0) }; PAGE],
                seen: [const { AtomicU64::new(0) }; PAGE],
            })
        });
        let counter = &page.counts[slot % PAGE];
        // One writer: no other thread ever writes this counter.
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        true
    }

    /// Adds what was counted since the last drain into `into`.
    fn drain(&self, into: &mut HashMap<String, HashMap<Outcome, u64>>) {
        let Data::Ruleset { ruleset, .. } = &*self.data else {
            return;
        };
        for (index, bounds) in self.offsets.windows(2).enumerate() {
            let (start, end) = (bounds[0] as usize, bounds[1] as usize);
            for slot in start..end {
                let Some(page) = self.pages.get(slot / PAGE).and_then(OnceLock::get) else {
                    continue;
                };
                let (count, seen) = (&page.counts[slot % PAGE], &page.seen[slot % PAGE]);
                let now = count.load(Ordering::Relaxed);
                let before = seen.load(Ordering::Relaxed);
                if now == before {
                    continue;
                }
                seen.store(now, Ordering::Relaxed);
                if let Some((key, Some(flag))) = ruleset.flag_at(index) {
                    add_outcome(into, key, flag, slot - start, now.wrapping_sub(before));
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

    /// Counts a successful evaluation of the flag at `index` of `data`'s ruleset, without a
    /// lock. Returns false when it could not (not ruleset data, or no such counter): the
    /// caller then counts it with [`EventQueue::count`].
    #[inline]
    pub(crate) fn count_at(
        &self,
        data: &Arc<Data>,
        index: usize,
        variation: Option<usize>,
    ) -> bool {
        let Some(table) = self.shared_table(data) else {
            return false;
        };
        match table.slot(index, variation) {
            Some(counter) => {
                counter.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Counts a successful evaluation like [`EventQueue::count_at`], in the calling thread's
    /// own counters for `data` (made and registered on its first count).
    #[inline]
    pub(crate) fn count_local(
        &self,
        local: &OnceCell<Arc<LocalCounters>>,
        data: &Arc<Data>,
        index: usize,
        variation: Option<usize>,
    ) -> bool {
        match local.get() {
            Some(counters) => counters.add(index, variation),
            None => self.count_local_first(local, data, index, variation),
        }
    }

    /// [`EventQueue::count_local`] on a thread's first count for `data`.
    #[cold]
    #[inline(never)]
    fn count_local_first(
        &self,
        local: &OnceCell<Arc<LocalCounters>>,
        data: &Arc<Data>,
        index: usize,
        variation: Option<usize>,
    ) -> bool {
        let Some(table) = self.shared_table(data) else {
            return false;
        };
        let made = Arc::new(LocalCounters::new(
            Arc::clone(data),
            Arc::clone(&table.offsets),
        ));
        lock(&self.local).push(Arc::clone(&made));
        local.get_or_init(|| made).add(index, variation)
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
    fn next_batch(&self, sdk: &(String, String)) -> Option<pb::PublishRequest> {
        if let Some(retry) = lock(&self.retry).take() {
            return Some(retry);
        }
        let events: Vec<Event> = {
            let mut queue = lock(&self.queue);
            let n = queue.len().min(self.config.batch_size);
            queue.drain(..n).collect()
        };
        let (start, mut counts) = {
            let mut summaries = lock(&self.summaries);
            let start = summaries.start;
            summaries.start = now_millis();
            (start, std::mem::take(&mut summaries.counts))
        };
        self.drain_counters(&mut counts);
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
