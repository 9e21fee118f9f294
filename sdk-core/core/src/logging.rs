//! The client's log messages, handed to the host's logging.
//!
//! The core logs through `tracing`. A Rust application sees those messages through its own
//! subscriber, as with any crate. An application in another language has none: each binding
//! gives its client a [`LogSink`] (Python's `logging`, Node's `logger` option, Go's
//! `log/slog`, SLF4J or java.util.logging, a .NET or Swift callback) and the client routes
//! its own messages there instead, on every thread it runs code on.
//!
//! Only messages of Vexil's crates reach the sink (not those of the network libraries
//! below), at the levels the sink enables, and never a flood: the same message repeated
//! within [`REPEAT_WINDOW`] is logged once, and its next occurrence after the window says
//! how many were left out.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};

/// An identical message is logged at most once per window.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// Distinct messages remembered for the repeat check; beyond, the oldest are forgotten.
const REMEMBERED: usize = 256;

/// The level of a log message, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl LogLevel {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The level of its number (1 error … 5 trace), as the bindings pass it.
    pub fn from_number(number: u8) -> Option<LogLevel> {
        Some(match number {
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            3 => LogLevel::Info,
            4 => LogLevel::Debug,
            5 => LogLevel::Trace,
            _ => return None,
        })
    }

    /// The level of its name (as [`LogLevel::as_str`] gives it, any case).
    pub fn from_name(name: &str) -> Option<LogLevel> {
        Some(match name.to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }

    fn of(level: &tracing::Level) -> LogLevel {
        match *level {
            tracing::Level::ERROR => LogLevel::Error,
            tracing::Level::WARN => LogLevel::Warn,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::DEBUG => LogLevel::Debug,
            tracing::Level::TRACE => LogLevel::Trace,
        }
    }
}

/// Where a client's log messages go. Called from the client's own threads (and from the
/// caller's, inside [`Client::new`](crate::Client::new) and
/// [`Client::close`](crate::Client::close)), so it must not block for long.
pub trait LogSink: Send + Sync {
    /// Whether messages of `level` are wanted now; asked before each message is built.
    fn enabled(&self, level: LogLevel) -> bool;
    /// One message: the text, then its fields as `name=value`.
    fn log(&self, level: LogLevel, message: &str);
}

/// How a message reaches a host's logger, on the log thread (see [`on_log_thread`]).
pub type Deliver = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

/// A sink whose messages up to `max_level` are handed to `deliver` on the process's one log
/// thread, in order, rather than on the thread that logs them: for hosts whose logging needs
/// something a client thread must not wait for (Python's GIL, a JVM attachment). `deliver`
/// is dropped on that thread too, after the sink's last message.
pub fn on_log_thread(max_level: LogLevel, deliver: Deliver) -> Arc<dyn LogSink> {
    Arc::new(LogThreadSink { max_level, deliver })
}

struct LogThreadSink {
    max_level: LogLevel,
    deliver: Deliver,
}

type Queued = (Deliver, LogLevel, String);

impl LogThreadSink {
    /// The log thread's queue, the thread started on first use; `None` if it cannot start.
    fn queue() -> Option<&'static Mutex<std::sync::mpsc::Sender<Queued>>> {
        static QUEUE: OnceLock<Option<Mutex<std::sync::mpsc::Sender<Queued>>>> = OnceLock::new();
        QUEUE
            .get_or_init(|| {
                let (sender, received) = std::sync::mpsc::channel::<Queued>();
                std::thread::Builder::new()
                    .name("vexil-log".into())
                    .spawn(move || {
                        for (deliver, level, message) in received {
                            deliver(level, &message);
                        }
                    })
                    .ok()
                    .map(|_| Mutex::new(sender))
            })
            .as_ref()
    }
}

impl LogSink for LogThreadSink {
    fn enabled(&self, level: LogLevel) -> bool {
        level <= self.max_level
    }

    fn log(&self, level: LogLevel, message: &str) {
        if let Some(queue) = LogThreadSink::queue() {
            let queue = queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // The thread ends only with the process.
            let _ = queue.send((self.deliver.clone(), level, message.to_owned()));
        }
    }
}

/// The `tracing` dispatcher that routes Vexil's messages to `sink`.
pub(crate) fn dispatch(sink: Arc<dyn LogSink>) -> Dispatch {
    // `tracing` caches each callsite's interest. While a single dispatcher is registered it
    // asks only the default of the thread that first reaches the callsite, which may be the
    // thread of a client without a sink: the callsite would be cached as never wanted, and
    // every sink would miss it. A second dispatcher, alive for the process and interested in
    // Vexil's callsites, makes `tracing` ask every registered one, always.
    static INTERESTED: OnceLock<Dispatch> = OnceLock::new();
    INTERESTED.get_or_init(|| Dispatch::new(Interested));
    Dispatch::new(Router {
        sink,
        repeats: Mutex::new(Repeats::default()),
    })
}

/// Keeps Vexil's callsites of interest (see [`dispatch`]); takes nothing itself.
struct Interested;

impl Subscriber for Interested {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        interest(metadata)
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// A `tracing` subscriber that hands events of Vexil's crates to a sink. Spans are not
/// used by the client; they are accepted and ignored.
struct Router {
    sink: Arc<dyn LogSink>,
    repeats: Mutex<Repeats>,
}

fn ours(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("vexil")
}

/// Vexil's callsites are of interest, each time (a sink's levels may change: a host's logger
/// reconfigured); no other crate's.
fn interest(metadata: &Metadata<'_>) -> Interest {
    if ours(metadata) {
        Interest::sometimes()
    } else {
        Interest::never()
    }
}

impl Subscriber for Router {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        interest(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && ours(metadata) && self.sink.enabled(LogLevel::of(metadata.level()))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = Text::default();
        event.record(&mut text);
        let level = LogLevel::of(event.metadata().level());
        let message = {
            let mut repeats = self
                .repeats
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            repeats.admit(level, text.0, Instant::now())
        };
        if let Some(message) = message {
            self.sink.log(level, &message);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message, then its other fields as ` name=value`.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// The messages logged recently, for the repeat check.
#[derive(Default)]
struct Repeats {
    seen: HashMap<(LogLevel, String), Seen>,
}

struct Seen {
    logged_at: Instant,
    left_out: u64,
}

impl Repeats {
    /// The text to log for `message` at `now`, or `None` when it repeats one logged within
    /// the window.
    fn admit(&mut self, level: LogLevel, message: String, now: Instant) -> Option<String> {
        let key = (level, message);
        if let Some(seen) = self.seen.get_mut(&key) {
            let since = now.duration_since(seen.logged_at);
            if since < REPEAT_WINDOW {
                seen.left_out += 1;
                return None;
            }
            let left_out = std::mem::take(&mut seen.left_out);
            seen.logged_at = now;
            return Some(if left_out == 0 {
                key.1
            } else {
                format!(
                    "{} (repeated {left_out} more times in the last {} s, not logged)",
                    key.1,
                    since.as_secs()
                )
            });
        }
        if self.seen.len() >= REMEMBERED
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, seen)| seen.logged_at)
                .map(|(key, _)| key.clone())
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(
            key.clone(),
            Seen {
                logged_at: now,
                left_out: 0,
            },
        );
        Some(key.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        max: Option<LogLevel>,
        got: Mutex<Vec<(LogLevel, String)>>,
    }

    impl LogSink for Collect {
        fn enabled(&self, level: LogLevel) -> bool {
            level <= self.max.unwrap_or(LogLevel::Info)
        }
        fn log(&self, level: LogLevel, message: &str) {
            self.got.lock().unwrap().push((level, message.to_owned()));
        }
    }

    #[test]
    fn messages_of_vexil_reach_the_sink_with_their_fields_at_enabled_levels() {
        let sink = Arc::new(Collect::default());
        tracing::dispatcher::with_default(&dispatch(sink.clone()), || {
            tracing::warn!(path = "/tmp/x", "cannot write the cache file");
            tracing::debug!("below the sink's level");
            tracing::warn!(target: "h2::codec", "not ours");
        });
        assert_eq!(
            *sink.got.lock().unwrap(),
            vec![(
                LogLevel::Warn,
                "cannot write the cache file path=/tmp/x".to_owned()
            )]
        );
    }

    fn probe() {
        tracing::debug!("probe");
    }

    #[test]
    fn a_callsite_first_reached_without_a_sink_still_reaches_a_sink_later() {
        // First reached on a thread whose default takes nothing.
        std::thread::spawn(probe).join().unwrap();
        let sink = Arc::new(Collect {
            max: Some(LogLevel::Debug),
            ..Collect::default()
        });
        tracing::dispatcher::with_default(&dispatch(sink.clone()), probe);
        std::thread::spawn(probe).join().unwrap();
        tracing::dispatcher::with_default(&dispatch(sink.clone()), probe);
        assert_eq!(
            *sink.got.lock().unwrap(),
            vec![
                (LogLevel::Debug, "probe".to_owned()),
                (LogLevel::Debug, "probe".to_owned())
            ]
        );
    }

    #[test]
    fn a_repeated_message_is_logged_once_per_window_then_says_how_many_were_left_out() {
        let mut repeats = Repeats::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(
            repeats.admit(LogLevel::Warn, "dropped".into(), at(0)),
            Some("dropped".into())
        );
        assert_eq!(repeats.admit(LogLevel::Warn, "dropped".into(), at(1)), None);
        assert_eq!(
            repeats.admit(LogLevel::Warn, "dropped".into(), at(59)),
            None
        );
        assert_eq!(
            repeats.admit(LogLevel::Warn, "other".into(), at(2)),
            Some("other".into()),
            "another message is not held back"
        );
        let after = repeats.admit(LogLevel::Warn, "dropped".into(), at(61));
        assert_eq!(
            after.as_deref(),
            Some("dropped (repeated 2 more times in the last 61 s, not logged)")
        );
        assert_eq!(
            repeats.admit(LogLevel::Warn, "dropped".into(), at(130)),
            Some("dropped".into()),
            "nothing left out this time"
        );
    }

    #[test]
    fn the_log_thread_delivers_in_order_and_not_on_the_logging_thread() {
        let (sent, received) = std::sync::mpsc::channel();
        let caller = std::thread::current().id();
        let sink = on_log_thread(
            LogLevel::Warn,
            Arc::new(move |level, message: &str| {
                let _ = sent.send((level, message.to_owned(), std::thread::current().id()));
            }),
        );
        assert!(sink.enabled(LogLevel::Warn) && !sink.enabled(LogLevel::Info));
        sink.log(LogLevel::Error, "one");
        sink.log(LogLevel::Warn, "two");
        let wait = Duration::from_secs(5);
        let first = received.recv_timeout(wait).unwrap();
        let second = received.recv_timeout(wait).unwrap();
        assert_eq!((first.0, first.1.as_str()), (LogLevel::Error, "one"));
        assert_eq!((second.0, second.1.as_str()), (LogLevel::Warn, "two"));
        assert_ne!(first.2, caller);
    }

    #[test]
    fn levels_have_names_and_numbers() {
        for level in [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ] {
            assert_eq!(LogLevel::from_name(level.as_str()), Some(level));
            assert_eq!(LogLevel::from_number(level as u8), Some(level));
        }
        assert_eq!(LogLevel::from_name("WARNING"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::from_number(0), None);
    }
}
