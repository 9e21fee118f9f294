//! Events reach the server exactly once.

use std::time::Duration;

use vexil_core::{Client, Config, EventConfig};
use vexil_engine::{Context, SingleContext};

use vexil_testing::{ENV, PROJECT, TestServer, eventually_blocking};

use crate::start_server;

const WAIT: Duration = Duration::from_secs(10);

fn user(key: &str) -> Context {
    Context::from(SingleContext::new("user", key).unwrap())
}

/// A server with the experiment flag "checkout", and a client with `events` that is ready
/// and sees alice in the experiment.
async fn experiment_client(events: EventConfig) -> (TestServer, Client) {
    let server = start_server().await;
    server
        .create_experiment_flag("checkout", "checkout-test")
        .await;
    let client = server
        .ready_client(ENV, "server", |config| config.with_events(events))
        .await;
    let alice = user("alice");
    eventually_blocking(WAIT, "the experiment is synced", || {
        client
            .bool_variation_detail("checkout", &alice, false)
            .in_experiment
    })
    .await;
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposures_tracks_and_summaries_arrive_once_and_close_flushes() {
    let events = EventConfig {
        flush_interval: Duration::from_secs(3600),
        ..EventConfig::default()
    };
    let (server, client) = experiment_client(events.clone()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    // Five evaluations for alice and two for bob: one exposure each (deduplicated).
    for _ in 0..5 {
        client.bool_variation("checkout", &alice, false);
    }
    for _ in 0..2 {
        client.bool_variation("checkout", &bob, false);
    }
    client.track("purchase", &alice, Some(12.5)).unwrap();
    client.track("purchase", &bob, None).unwrap();
    client.track("signup", &bob, None).unwrap();
    assert!(client.flush(WAIT), "delivered");
    let stats = client.event_stats();
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.queued, 0);

    let storage = &server.storage;
    let counts = storage.count_events(PROJECT, ENV).await.unwrap();
    assert_eq!(counts.exposures, 2, "{counts:?}");
    assert_eq!(counts.track_events, 3, "{counts:?}");
    assert!(counts.summaries >= 1, "{counts:?}");
    // A flush with nothing new sends nothing.
    assert!(client.flush(WAIT));
    let again = storage.count_events(PROJECT, ENV).await.unwrap();
    assert_eq!(again.batches, counts.batches);

    // close() flushes what is pending.
    let closing = Client::new(
        Config::new(server.sdk_key(ENV, "server"))
            .with_endpoint(server.endpoint())
            .with_events(events),
    )
    .unwrap();
    closing.track("purchase", &alice, Some(1.0)).unwrap();
    closing.track("purchase", &alice, Some(2.0)).unwrap();
    closing.close();
    let after = storage.count_events(PROJECT, ENV).await.unwrap();
    assert_eq!(after.track_events, 5, "{after:?}");
    client.close();
}

/// A flush ends under steady traffic: what is evaluated and tracked while it runs waits for
/// the next one. (A flush that took that too never ended: it sent batch after batch, and
/// neither periodic nor explicit flushes returned.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_ends_under_steady_traffic() {
    let (server, client) = experiment_client(EventConfig {
        flush_interval: Duration::from_secs(3600),
        ..EventConfig::default()
    })
    .await;
    let client = std::sync::Arc::new(client);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = {
        let (client, stop) = (client.clone(), stop.clone());
        std::thread::spawn(move || {
            let alice = user("alice");
            let mut tracked = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client.bool_variation("checkout", &alice, false);
                client.track("busy", &alice, None).unwrap();
                tracked += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            tracked
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let before = server.storage.count_events(PROJECT, ENV).await.unwrap();
    for _ in 0..3 {
        assert!(client.flush(WAIT), "a flush under traffic ends, delivered");
    }
    let after = server.storage.count_events(PROJECT, ENV).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let tracked = busy.join().unwrap();
    // Each flush sends what was pending when it began: a few batches of at most 500 events.
    let batches = after.batches - before.batches;
    assert!(
        (1..=12).contains(&batches),
        "{batches} batches for 3 flushes"
    );
    assert!(client.flush(WAIT));
    let last = server.storage.count_events(PROJECT, ENV).await.unwrap();
    assert_eq!(
        last.track_events as u64, tracked,
        "every tracked event arrived once"
    );
    client.close();
}

/// While the server cannot be reached, periodic flushes back off (jittered, doubling from
/// the initial backoff) rather than trying every batch three times at each interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_publishing_backs_off_while_the_server_is_unreachable() {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Accepts and closes at once: every attempt to reach it is a connection counted here.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicU64::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            drop(socket);
        }
    });
    let client = Client::new(
        Config::new("vxl-server-unreachable")
            .with_endpoint(format!("http://{address}"))
            .with_events(EventConfig {
                flush_interval: Duration::from_millis(50),
                ..EventConfig::default()
            }),
    )
    .unwrap();
    let alice = user("alice");
    for _ in 0..100 {
        client.track("waiting", &alice, None).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = connections.load(Ordering::Relaxed);
    // Five seconds of 50 ms intervals, three attempts a flush, would be about 25 connections
    // for events alone; backing off from 1 s leaves a handful, beside the stream's own.
    assert!(seen <= 16, "{seen} connections in 5 s");
    let stats = client.event_stats();
    assert_eq!(
        stats.dropped, 0,
        "the events wait for the server: {stats:?}"
    );
    drop(client);
}

/// With summaries off, a typed variation still records the exposure of a context in an
/// experiment, and no summary is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposures_without_summaries() {
    let (server, client) = experiment_client(EventConfig {
        flush_interval: Duration::from_secs(3600),
        summaries: false,
        ..EventConfig::default()
    })
    .await;
    let (alice, bob) = (user("alice"), user("bob"));
    for _ in 0..3 {
        client.bool_variation("checkout", &alice, false);
        client.bool_variation("checkout", &bob, false);
        client.bool_variation("missing", &bob, false);
    }
    assert!(client.flush(WAIT), "delivered");
    let counts = server.storage.count_events(PROJECT, ENV).await.unwrap();
    assert_eq!(counts.exposures, 2, "{counts:?}");
    assert_eq!(counts.summaries, 0, "{counts:?}");
    client.close();
}

/// Evaluation summaries count every call exactly once: across a change of data (the counters
/// of the replaced ruleset are drained too), with calls from several threads racing the
/// flushes, and with errors (counted apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_count_every_evaluation_exactly_once() {
    let server = start_server().await;
    server.create_bool_flag("counted", false).await;
    let client = std::sync::Arc::new(
        server
            .ready_client(ENV, "server", |config| {
                config.with_events(EventConfig {
                    flush_interval: Duration::from_secs(3600),
                    ..EventConfig::default()
                })
            })
            .await,
    );
    let alice = user("alice");
    // Served `true` (variation 1) while on; `false` (variation 0) once toggled off.
    let (mut served_true, mut served_false) = (0i64, 0i64);
    let mut tally = |value: bool| {
        *(if value {
            &mut served_true
        } else {
            &mut served_false
        }) += 1
    };
    for _ in 0..7 {
        tally(client.bool_variation("counted", &alice, false));
    }
    // Threads counting while the counters are drained.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (client, alice) = (client.clone(), alice.clone());
            std::thread::spawn(move || {
                (0..500)
                    .filter(|_| client.bool_variation("counted", &alice, false))
                    .count() as i64
            })
        })
        .collect();
    assert!(client.flush(WAIT));
    assert!(client.flush(WAIT));
    let from_threads: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    server.toggle("counted", false).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let value = client.bool_variation("counted", &alice, true);
        tally(value);
        if !value {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the toggle arrives");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..4 {
        tally(client.bool_variation("counted", &alice, true));
    }
    for _ in 0..3 {
        client.bool_variation("missing", &alice, false);
    }
    assert!(client.flush(WAIT));
    served_true += from_threads;
    served_false += 4 * 500 - from_threads;

    let usage = server
        .storage
        .flag_usage(PROJECT, ENV, None, 0, i64::MAX / 2)
        .await
        .unwrap();
    let total = |flag: &str, variation: Option<i64>| -> i64 {
        usage
            .iter()
            .filter(|b| b.flag_key == flag && b.variation == variation)
            .map(|b| b.count)
            .sum()
    };
    assert_eq!(total("counted", Some(1)), served_true, "{usage:?}");
    assert_eq!(total("counted", Some(0)), served_false, "{usage:?}");
    assert_eq!(total("counted", None), 0, "{usage:?}");
    assert_eq!(total("missing", None), 3, "{usage:?}");
    assert!(
        usage
            .iter()
            .filter(|b| b.flag_key == "missing")
            .all(|b| b.error_kind.is_some()),
        "{usage:?}"
    );
    client.close();
}
