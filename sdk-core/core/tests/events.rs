//! Events reach the server exactly once.

mod support;

use std::time::Duration;

use vexil_core::{Client, Config, EventConfig, Status};
use vexil_engine::{Context, SingleContext};

use support::{ENV, PROJECT, TestServer, eventually};

const WAIT: Duration = Duration::from_secs(10);

fn user(key: &str) -> Context {
    Context::from(SingleContext::new("user", key).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposures_tracks_and_summaries_arrive_once_and_close_flushes() {
    let server = TestServer::start().await;
    server
        .create_experiment_flag("checkout", "checkout-test")
        .await;
    let events = EventConfig {
        flush_interval: Duration::from_secs(3600),
        ..EventConfig::default()
    };
    let client = Client::new(
        Config::new(server.sdk_key("server"))
            .with_endpoint(server.endpoint())
            .with_events(events.clone()),
    )
    .unwrap();
    assert_eq!(client.wait_for_initialization(WAIT), Status::Ready);
    let (alice, bob) = (user("alice"), user("bob"));
    eventually(WAIT, "the experiment is synced", || {
        client
            .bool_variation_detail("checkout", &alice, false)
            .in_experiment
    })
    .await;
    // Five evaluations for alice and two for bob: one exposure each (deduplicated).
    for _ in 0..5 {
        client.bool_variation("checkout", &alice, false);
    }
    for _ in 0..2 {
        client.bool_variation("checkout", &bob, false);
    }
    client.track("purchase", &alice, Some(12.5));
    client.track("purchase", &bob, None);
    client.track("signup", &bob, None);
    assert!(client.flush(WAIT), "delivered");
    let stats = client.event_stats();
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.queued, 0);

    let storage = server.storage().await;
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
        Config::new(server.sdk_key("server"))
            .with_endpoint(server.endpoint())
            .with_events(events),
    )
    .unwrap();
    closing.track("purchase", &alice, Some(1.0));
    closing.track("purchase", &alice, Some(2.0));
    closing.close();
    let after = storage.count_events(PROJECT, ENV).await.unwrap();
    assert_eq!(after.track_events, 5, "{after:?}");
    client.close();
}
