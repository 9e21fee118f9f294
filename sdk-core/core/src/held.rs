//! The data a thread last used, per client, so that a variation call reads the current data
//! without writing to memory other threads share.
//!
//! `ArcSwap::load` is cheap, but it writes to a debt slot with a full fence and releases it
//! after the call: on small flags that is as much as the evaluation itself. A thread instead
//! keeps, for the last few clients it called, an `Arc` of the data it used and the client's
//! data generation at the time. A call reads the generation (a plain load): when it is the
//! one held, the held data is current and is used as it is; otherwise the thread loads the
//! current data once and keeps that.
//!
//! Each entry also holds the thread's own evaluation counters for its data (see
//! `events::LocalCounters`), so that counting for the summaries is no shared atomic add.
//!
//! What this costs in memory: a thread keeps the data it last used for each of those
//! clients until it calls that client again after a change, calls [`HELD_CLIENTS`] other
//! clients, or exits. A thread that stops calling a client after a change therefore keeps
//! one older copy of that client's data alive (the summaries' counters of that copy are still
//! drained, so no count is lost).

use std::cell::{OnceCell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::data::Data;
use crate::events::LocalCounters;

/// Clients a thread keeps data for; the least recently called is forgotten first.
pub(crate) const HELD_CLIENTS: usize = 4;

/// Ids of clients for the threads' caches: unique for the process's life, so that a new
/// client is never taken for a dropped one.
static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// A client's data as variation calls read it: the current data and its generation, which
/// moves on every store.
#[derive(Debug)]
pub(crate) struct SharedData {
    id: u64,
    current: ArcSwap<Data>,
    generation: AtomicU64,
}

struct Entry {
    client: u64,
    generation: u64,
    data: Arc<Data>,
    /// This thread's evaluation counters for `data`, made on the first count.
    counters: OnceCell<Arc<LocalCounters>>,
}

thread_local! {
    /// Most recently called client first; in the thread's own storage (no pointer to follow
    /// before the first entry).
    static HELD: RefCell<[Option<Entry>; HELD_CLIENTS]> =
        const { RefCell::new([const { None }; HELD_CLIENTS]) };
}

impl SharedData {
    pub(crate) fn new(initial: Data) -> SharedData {
        SharedData {
            id: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            current: ArcSwap::from_pointee(initial),
            generation: AtomicU64::new(0),
        }
    }

    /// The current data, for everything but the variation calls.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<Data>> {
        self.current.load()
    }

    /// Replaces the data. Calls already running finish on the data they started with.
    pub(crate) fn store(&self, data: Arc<Data>) {
        self.current.store(data);
        // After the store: a thread that sees the new generation loads the new data.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Runs `f` on the current data, from this thread's cache when it is current, with this
    /// thread's counters for that data. Falls back to a plain load, and no counters of its
    /// own, when the thread's cache is not available (a call made while the thread's locals
    /// are being destroyed, or from inside another call on this thread).
    #[inline]
    pub(crate) fn with_current<R>(
        &self,
        f: impl FnOnce(&Arc<Data>, Option<&OnceCell<Arc<LocalCounters>>>) -> R,
    ) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        let mut pending = Some(f);
        let cached = HELD.try_with(|held| {
            let mut held = held.try_borrow_mut().ok()?;
            let entry = self.held_entry(&mut held, generation)?;
            let f = pending.take()?;
            Some(f(&entry.data, Some(&entry.counters)))
        });
        match cached {
            Ok(Some(result)) => result,
            _ => self.with_loaded(pending),
        }
    }

    /// [`SharedData::with_current`] without the thread's cache.
    #[cold]
    #[inline(never)]
    fn with_loaded<R>(
        &self,
        f: Option<impl FnOnce(&Arc<Data>, Option<&OnceCell<Arc<LocalCounters>>>) -> R>,
    ) -> R {
        match f {
            Some(f) => f(&self.current.load(), None),
            // The cached path took `f` only to return its result.
            None => unreachable!("a variation ran without a result"),
        }
    }

    /// This client's entry, made current and moved first (always there after a refresh).
    #[inline]
    fn held_entry<'h>(
        &self,
        held: &'h mut [Option<Entry>; HELD_CLIENTS],
        generation: u64,
    ) -> Option<&'h Entry> {
        let current = matches!(&held[0],
            Some(first) if first.client == self.id && first.generation == generation);
        if !current {
            self.refresh_entry(held, generation);
        }
        held[0].as_ref()
    }

    #[cold]
    #[inline(never)]
    fn refresh_entry(&self, held: &mut [Option<Entry>; HELD_CLIENTS], generation: u64) {
        let position = held
            .iter()
            .position(|entry| entry.as_ref().is_some_and(|e| e.client == self.id));
        match position {
            Some(i) => held[..=i].rotate_right(1),
            None => {
                // The least recently called client (or an empty place) moves first, emptied.
                held.rotate_right(1);
                held[0] = None;
            }
        }
        match &mut held[0] {
            Some(entry) if entry.generation == generation => {}
            Some(entry) => {
                // Loaded after the generation was read: at least as new as that one.
                entry.data = self.current.load_full();
                entry.generation = generation;
                // Counters belong to one ruleset: the next count makes new ones.
                entry.counters = OnceCell::new();
            }
            empty => {
                *empty = Some(Entry {
                    client: self.id,
                    generation,
                    data: self.current.load_full(),
                    counters: OnceCell::new(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(version: i64) -> Data {
        Data::Ruleset {
            ruleset: vexil_engine::Ruleset::from_json(r#"{"flags": []}"#)
                .unwrap_or_else(|err| panic!("{err}")),
            version,
            source: crate::data::Source::Bootstrap,
            received_at: 0,
            counters: Default::default(),
        }
    }

    #[test]
    fn a_call_sees_every_store_and_keeps_only_the_data_it_uses() {
        let shared = SharedData::new(data(1));
        assert_eq!(shared.with_current(|d, _| d.version()), 1);
        let second = Arc::new(data(2));
        shared.store(second.clone());
        assert_eq!(shared.with_current(|d, _| d.version()), 2);
        // This thread's entry holds the current data; the first is no longer held anywhere.
        assert_eq!(Arc::strong_count(&second), 3);
        shared.store(Arc::new(data(3)));
        assert_eq!(shared.with_current(|d, _| d.version()), 3);
        assert_eq!(Arc::strong_count(&second), 1, "replaced on the next call");
    }

    #[test]
    fn a_thread_forgets_the_least_recently_called_client() {
        let clients: Vec<SharedData> = (0..=HELD_CLIENTS as i64)
            .map(|v| SharedData::new(data(v)))
            .collect();
        let first = clients[0].current.load_full();
        for (v, client) in clients.iter().enumerate() {
            assert_eq!(client.with_current(|d, _| d.version()), v as i64);
        }
        // The first client's entry was dropped when the fifth was called.
        assert_eq!(Arc::strong_count(&first), 2);
        assert_eq!(clients[0].with_current(|d, _| d.version()), 0);
        assert_eq!(Arc::strong_count(&first), 3);
    }

    #[test]
    fn a_nested_call_on_the_same_thread_falls_back_to_a_plain_load() {
        let outer = SharedData::new(data(1));
        let inner = SharedData::new(data(2));
        let versions =
            outer.with_current(|o, _| (o.version(), inner.with_current(|i, _| i.version())));
        assert_eq!(versions, (1, 2));
    }

    #[test]
    fn threads_see_stores_made_while_they_run() {
        let shared = Arc::new(SharedData::new(data(0)));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut last = 0;
                    while last < 200 {
                        let now = shared.with_current(|d, _| d.version());
                        assert!(now >= last, "went back from {last} to {now}");
                        last = now;
                    }
                })
            })
            .collect();
        for v in 1..=200 {
            shared.store(Arc::new(data(v)));
        }
        for reader in readers {
            reader.join().unwrap_or_else(|_| panic!("a reader failed"));
        }
    }
}
