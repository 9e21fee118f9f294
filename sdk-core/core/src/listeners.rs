//! Change listeners: registered functions called on the client's thread after every change
//! of flag data.
//!
//! Removing a listener waits for a call of it that is running and guarantees that no call
//! starts afterwards, so that a binding may release what the listener refers to (a C
//! `user_data`, a JavaScript function, a Python callable) as soon as removal returns. A
//! listener that removes itself, or calls anything that waits for listeners, from inside its
//! own call does not wait for itself (that would deadlock): [`in_listener`] tells bindings
//! when a call comes from inside a listener.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::answer::{FlagChange, ListenerId};

type Listener = Box<dyn Fn(&FlagChange) + Send + Sync>;

/// One registered listener. The mutex is held while it runs: removal takes it to empty the
/// slot, which waits for a running call.
struct Slot {
    id: u64,
    listener: Mutex<Option<Listener>>,
}

thread_local! {
    /// Set while this thread runs a listener.
    static IN_LISTENER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is running a change listener now.
pub fn in_listener() -> bool {
    IN_LISTENER.with(Cell::get)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
pub(crate) struct Listeners {
    slots: RwLock<Vec<Arc<Slot>>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &self.count())
            .finish()
    }
}

impl Listeners {
    pub(crate) fn add(&self, listener: Listener) -> ListenerId {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = Arc::new(Slot {
            id,
            listener: Mutex::new(Some(listener)),
        });
        self.slots
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(slot);
        ListenerId(id)
    }

    /// Unregisters a listener; returns whether it was registered. Waits for a running call of
    /// it, unless called from inside a listener on this thread.
    pub(crate) fn remove(&self, id: ListenerId) -> bool {
        let slot = {
            let mut slots = self
                .slots
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(index) = slots.iter().position(|s| s.id == id.0) else {
                return false;
            };
            slots.remove(index)
        };
        if in_listener() {
            // It may be this very listener: its slot is locked by this thread. Calls that
            // start later find it gone from the list; one already past the list's read
            // finds the slot emptied when `try_lock` succeeds, else runs once more.
            if let Ok(mut listener) = slot.listener.try_lock() {
                *listener = None;
            }
        } else {
            *lock(&slot.listener) = None;
        }
        true
    }

    /// Unregisters every listener, waiting for running calls as [`Listeners::remove`].
    pub(crate) fn clear(&self) {
        let ids: Vec<ListenerId> = self
            .slots
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|s| ListenerId(s.id))
            .collect();
        for id in ids {
            self.remove(id);
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.slots
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Calls every listener with `change`, one after the other. A panicking listener is
    /// reported and does not stop the others, nor the client.
    pub(crate) fn notify(&self, change: &FlagChange) {
        let slots: Vec<Arc<Slot>> = self
            .slots
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for slot in slots {
            let held = lock(&slot.listener);
            let Some(listener) = held.as_ref() else {
                continue;
            };
            IN_LISTENER.with(|flag| flag.set(true));
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener(change)));
            IN_LISTENER.with(|flag| flag.set(false));
            // Logged once the slot is released: removal waits on it.
            drop(held);
            if outcome.is_err() {
                tracing::warn!("a change listener panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn change() -> FlagChange {
        FlagChange {
            flag_keys: vec!["f".into()],
            version: 1,
        }
    }

    #[test]
    fn removal_waits_for_a_running_call_and_stops_later_ones() {
        let listeners = Arc::new(Listeners::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let (started, is_started) = std::sync::mpsc::channel();
        let counted = calls.clone();
        let id = listeners.add(Box::new(move |_| {
            let _ = started.send(());
            std::thread::sleep(Duration::from_millis(100));
            counted.fetch_add(1, Ordering::SeqCst);
        }));
        let notifier = {
            let listeners = listeners.clone();
            std::thread::spawn(move || listeners.notify(&change()))
        };
        is_started.recv().unwrap();
        assert!(listeners.remove(id));
        // The running call finished before removal returned.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        notifier.join().unwrap();
        listeners.notify(&change());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!listeners.remove(id));
    }

    #[test]
    fn a_listener_may_remove_itself_and_a_panic_stops_nothing() {
        let listeners = Arc::new(Listeners::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let own_id = Arc::new(Mutex::new(None::<ListenerId>));
        let (inner, held, counted) = (listeners.clone(), own_id.clone(), calls.clone());
        listeners.add(Box::new(|_| panic!("a listener's bug")));
        let id = listeners.add(Box::new(move |_| {
            assert!(in_listener());
            counted.fetch_add(1, Ordering::SeqCst);
            if let Some(id) = *lock(&held) {
                assert!(inner.remove(id));
            }
        }));
        *lock(&own_id) = Some(id);
        listeners.notify(&change());
        listeners.notify(&change());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(listeners.count(), 1);
        assert!(!in_listener());
        listeners.clear();
        assert_eq!(listeners.count(), 0);
    }
}
