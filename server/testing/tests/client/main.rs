//! The client against a real vexil-server over loopback gRPC.

mod events;
mod openfeature;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use vexil_core::{Client, Config, EventConfig, Mode, Source, Status};
use vexil_engine::{Context, ErrorKind, Reason, SingleContext};

use vexil_server::live::LiveSettings;
use vexil_testing::{ENV, ServerOptions, TestDatabase, TestServer, eventually_blocking};

const WAIT: Duration = Duration::from_secs(10);

/// A server on SQLite whose streams beat and whose versions are checked every 500 ms, so that
/// clients notice a stopped server, and changes arrive, quickly.
async fn start_server() -> TestServer {
    let live = LiveSettings {
        heartbeat_interval: Duration::from_millis(500),
        version_check_interval: Duration::from_millis(500),
        ..LiveSettings::default()
    };
    let options = ServerOptions {
        live,
        ..ServerOptions::default()
    };
    TestServer::start(TestDatabase::sqlite(), options).await
}

fn user(key: &str) -> Context {
    Context::from(SingleContext::new("user", key).unwrap())
}

fn quick(config: Config) -> Config {
    Config {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        stream_timeout: Duration::from_secs(3),
        ..config
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_client_syncs_sees_changes_and_survives_the_server_going_away() {
    let mut server = start_server().await;
    server.create_bool_flag("checkout", false).await;
    let cache = tempfile::tempdir().unwrap();
    let client = Client::new(quick(
        Config::new(server.sdk_key(ENV, "server"))
            .with_endpoint(server.endpoint())
            .with_cache_dir(cache.path()),
    ))
    .unwrap();
    assert_eq!(client.mode(), Mode::Local);
    let alice = user("alice");

    // Before any data: the default, with a reason and source that say so.
    let early = client.bool_variation_detail("checkout", &alice, true);
    if early.source == Source::Defaults {
        assert!(early.value);
        assert_eq!(
            early.reason,
            Reason::Error {
                error_kind: ErrorKind::ClientNotReady
            }
        );
    }

    assert_eq!(client.wait_for_initialization(WAIT), Status::Ready);
    // The server's memory follows its own writes within milliseconds.
    eventually_blocking(WAIT, "the new flag is synced", || {
        client
            .bool_variation_detail("checkout", &alice, true)
            .reason
            == Reason::Off
    })
    .await;
    let detail = client.bool_variation_detail("checkout", &alice, true);
    assert!(!detail.value, "off serves false");
    assert_eq!(detail.reason, Reason::Off);
    assert_eq!(detail.source, Source::Network);
    let version = detail.version;
    assert!(version > 0);

    // A change reaches the client and its listener.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    client.on_change(move |change| sink.lock().unwrap().extend(change.flag_keys.clone()));
    server.toggle("checkout", true).await;
    eventually_blocking(WAIT, "the toggle reaches the client", || {
        client.bool_variation("checkout", &alice, false)
    })
    .await;
    eventually_blocking(WAIT, "the listener hears of it", || {
        seen.lock().unwrap().contains(&"checkout".to_owned())
    })
    .await;
    assert!(client.version() > version);

    // Unknown flags and wrong types: the default and an ERROR reason, never a failure.
    let missing = client.string_variation_detail("nope", &alice, "d");
    assert_eq!(missing.value, "d");
    assert_eq!(
        missing.reason,
        Reason::Error {
            error_kind: ErrorKind::FlagNotFound
        }
    );
    let wrong = client.number_variation_detail("checkout", &alice, 7.0);
    assert_eq!(wrong.value, 7.0);
    assert_eq!(
        wrong.reason,
        Reason::Error {
            error_kind: ErrorKind::WrongType
        }
    );
    let all = client.all_flags(&alice);
    assert_eq!(all["checkout"].value, Some(json!(true)));

    // The server goes away: the last good values, reported stale.
    server.kill().await;
    eventually_blocking(WAIT, "the client notices", || {
        matches!(client.status(), Status::Stale { .. })
    })
    .await;
    let stale = client.bool_variation_detail("checkout", &alice, false);
    assert!(stale.value);
    assert_eq!(stale.source, Source::Stale);

    // A client started now, with the server down, starts from the persisted cache.
    let held = client.version();
    let cached = Client::new(quick(
        Config::new(server.sdk_key(ENV, "server"))
            .with_endpoint(server.endpoint())
            .with_cache_dir(cache.path()),
    ))
    .unwrap();
    let detail = cached.bool_variation_detail("checkout", &alice, false);
    assert!(detail.value, "the cached ruleset serves true");
    assert_eq!(detail.source, Source::Cache);
    assert_eq!(detail.version, held);
    assert_eq!(cached.status(), Status::Initializing);

    // The server comes back: both resume from their version and see later changes.
    server.restart().await;
    assert_eq!(cached.wait_for_initialization(WAIT), Status::Ready);
    eventually_blocking(WAIT, "the first client reconnects", || {
        client.status() == Status::Ready
    })
    .await;
    server.toggle("checkout", false).await;
    eventually_blocking(WAIT, "the change after the restart arrives", || {
        !client.bool_variation("checkout", &alice, true)
            && !cached.bool_variation("checkout", &alice, true)
    })
    .await;
    assert_eq!(
        client
            .bool_variation_detail("checkout", &alice, true)
            .source,
        Source::Network
    );
    client.close();
    cached.close();
    assert_eq!(client.status(), Status::Closed);
    // After close, calls still answer from the last data.
    assert!(!client.bool_variation("checkout", &alice, true));
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_client_gets_values_only_and_identify_switches_context() {
    let server = start_server().await;
    server.create_bool_flag("public", true).await;
    server.create_bool_flag("internal", false).await;
    server.toggle("public", true).await;
    let client = Client::new(quick(
        Config::new(server.sdk_key(ENV, "mobile"))
            .with_endpoint(server.endpoint())
            .with_context(user("alice")),
    ))
    .unwrap();
    assert_eq!(client.mode(), Mode::Remote);
    assert_eq!(client.wait_for_initialization(WAIT), Status::Ready);
    let alice = user("alice");
    eventually_blocking(WAIT, "the toggled flag is served", || {
        client.bool_variation("public", &alice, false)
    })
    .await;
    let hidden = client.bool_variation_detail("internal", &alice, true);
    assert!(hidden.value);
    assert_eq!(
        hidden.reason,
        Reason::Error {
            error_kind: ErrorKind::FlagNotFound
        }
    );
    let all = client.all_flags(&alice);
    assert_eq!(all.keys().collect::<Vec<_>>(), ["public"]);

    assert!(client.identify(user("bob"), WAIT), "bob's values arrive");
    server.toggle("public", false).await;
    eventually_blocking(WAIT, "the change reaches the watch", || {
        !client.bool_variation("public", &user("bob"), true)
    })
    .await;
    client.close();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_bounded_while_the_server_is_down() {
    let mut server = start_server().await;
    let key = server.sdk_key(ENV, "server");
    let endpoint = server.endpoint();
    server.kill().await;
    let client = Client::new(quick(Config::new(key).with_endpoint(endpoint).with_events(
        EventConfig {
            capacity: 10,
            batch_size: 5,
            flush_interval: Duration::from_millis(50),
            attempts: 1,
            ..EventConfig::default()
        },
    )))
    .unwrap();
    let alice = user("alice");
    for i in 0..50 {
        client.track("clicked", &alice, Some(f64::from(i))).unwrap();
    }
    assert!(
        !client.flush(Duration::from_secs(5)),
        "nothing can be delivered"
    );
    let stats = client.event_stats();
    assert!(stats.dropped >= 30, "drops are counted: {stats:?}");
    assert!(stats.queued <= 10, "the queue stays bounded: {stats:?}");
    assert_eq!(stats.sent, 0);
    client.close();
}

/// Collects what a client logs.
#[derive(Default)]
struct Collected(Mutex<Vec<(vexil_core::LogLevel, String)>>);

impl vexil_core::LogSink for Collected {
    fn enabled(&self, level: vexil_core::LogLevel) -> bool {
        level <= vexil_core::LogLevel::Debug
    }
    fn log(&self, level: vexil_core::LogLevel, message: &str) {
        self.0.lock().unwrap().push((level, message.to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_reaches_the_log_sink_once_and_nothing_of_the_network_libraries_does() {
    let server = start_server().await;
    let collected = Arc::new(Collected::default());
    let client = Client::new(
        quick(Config::new("vxl-server-not-a-real-key"))
            .with_endpoint(server.endpoint())
            .with_log_sink(collected.clone()),
    )
    .unwrap();
    let status = tokio::task::block_in_place(|| client.wait_for_initialization(WAIT));
    assert!(matches!(status, Status::Failed { .. }), "{status:?}");
    client.close();
    let logged = collected.0.lock().unwrap().clone();
    let refused: Vec<_> = logged
        .iter()
        .filter(|(_, message)| message.contains("refused the SDK key"))
        .collect();
    assert_eq!(refused.len(), 1, "{logged:?}");
    assert_eq!(refused[0].0, vexil_core::LogLevel::Error);
    // Debug messages of the client are there (its status), those of tonic, h2 and hyper,
    // which would flood a host's log at debug, are not.
    assert!(
        logged.iter().any(|(_, m)| m.starts_with("client status")),
        "{logged:?}"
    );
    assert!(
        logged
            .iter()
            .all(|(_, m)| m.starts_with("client status") || m.contains("refused the SDK key")),
        "{logged:?}"
    );
    server.stop().await;
}

/// The async forms wait on the client's runtime: a single-threaded caller keeps running its
/// other tasks meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn async_waits_block_no_thread_of_the_caller() {
    let server = start_server().await;
    server.create_bool_flag("public", true).await;
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let client = Client::new(quick(
        Config::new(server.sdk_key(ENV, "mobile"))
            .with_endpoint(server.endpoint())
            .with_context(user("alice")),
    ))
    .unwrap();
    assert_eq!(
        client.wait_for_initialization_async(WAIT).await,
        Status::Ready
    );
    assert!(
        client.identify_async(user("bob"), WAIT).await,
        "bob's values arrive"
    );
    client.track("purchase", &user("bob"), Some(1.0)).unwrap();
    assert!(client.flush_async(WAIT).await, "the event is delivered");
    assert!(
        ticks.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the caller's thread ran its other task while waiting"
    );

    // A wait that cannot succeed ends at its timeout, with the status then.
    let silent =
        Client::new(Config::new("vxl-server-nobody-listens").with_endpoint("http://127.0.0.1:9"))
            .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        silent
            .wait_for_initialization_async(Duration::from_millis(300))
            .await,
        Status::Initializing
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A wait pending when the client closes is answered (with Closed), never left hanging.
    let (sender, answered) = std::sync::mpsc::channel();
    silent.when_initialized(Duration::from_secs(60), move |status| {
        let _ = sender.send(status);
    });
    silent.close();
    assert_eq!(
        answered.recv_timeout(Duration::from_secs(5)).unwrap(),
        Status::Closed
    );
    client.close();
    ticker.abort();
    drop(server);
}
