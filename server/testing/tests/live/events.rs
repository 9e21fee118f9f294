//! EventService.Publish end to end: batches stored once per id, counted in the metrics,
//! refused whole when any event is invalid, for SDK keys of every kind.

use prost_types::Struct;
use tonic::Code;
use tonic::transport::Channel;
use vexil_proto::v1 as pb;
use vexil_proto::v1::event_service_client::EventServiceClient;
use vexil_server::convert::{json_to_value, timestamp};
use vexil_server::live::LiveSettings;
use vexil_server::storage::{EventCounts, Storage, TrackEvent};

use vexil_testing::{Cluster, ENV, PROJECT, authed};

fn user(key: &str) -> Option<pb::Context> {
    Some(pb::Context {
        kind: "user".into(),
        key: key.into(),
        ..Default::default()
    })
}

/// Two exposures, two track events and a summary with two counters.
fn batch(batch_id: &str) -> pb::PublishRequest {
    let exposure = |key: &str, variation| pb::ExposureEvent {
        time: Some(timestamp(1_700_000_000_000)),
        flag_key: "checkout".into(),
        flag_version: 4,
        experiment_key: "checkout-test".into(),
        variation,
        context: user(key),
        in_experiment: true,
    };
    pb::PublishRequest {
        batch_id: batch_id.into(),
        sdk_name: "vexil-test".into(),
        sdk_version: "0.1.0".into(),
        exposures: vec![exposure("alice", 0), exposure("bob", 1)],
        track_events: vec![
            pb::TrackEvent {
                time: Some(timestamp(1_700_000_001_000)),
                name: "purchase".into(),
                context: user("alice"),
                value: Some(19.99),
                data: Some(Struct {
                    fields: [("sku".to_owned(), json_to_value(&serde_json::json!("A-1")))]
                        .into_iter()
                        .collect(),
                }),
            },
            pb::TrackEvent {
                time: Some(timestamp(1_700_000_002_000)),
                name: "signup".into(),
                context: user("bob"),
                value: None,
                data: None,
            },
        ],
        summaries: vec![pb::EvaluationSummary {
            start: Some(timestamp(1_700_000_000_000)),
            end: Some(timestamp(1_700_000_060_000)),
            flag_key: "checkout".into(),
            counters: vec![
                pb::EvaluationCounter {
                    flag_version: 4,
                    variation: Some(1),
                    error_kind: 0,
                    count: 10,
                },
                pb::EvaluationCounter {
                    flag_version: 4,
                    variation: None,
                    error_kind: pb::ErrorKind::WrongType as i32,
                    count: 1,
                },
            ],
        }],
    }
}

async fn publish(
    client: &mut EventServiceClient<Channel>,
    key: &str,
    request: pb::PublishRequest,
) -> Result<pb::PublishResponse, tonic::Status> {
    client
        .publish(authed(request, key))
        .await
        .map(|r| r.into_inner())
}

async fn counts(storage: &Storage, env: &str) -> (i64, i64, i64, i64) {
    let EventCounts {
        batches,
        exposures,
        track_events,
        summaries,
        ..
    } = storage.count_events(PROJECT, env).await.expect("counts");
    (batches, exposures, track_events, summaries)
}

/// The track events stored in `ENV`, newest first.
async fn track_events(storage: &Storage) -> Vec<TrackEvent> {
    storage
        .list_track_events(PROJECT, ENV, 10)
        .await
        .expect("track events")
}

/// A one-instance cluster on SQLite, its `kind` SDK key of `ENV`, and an event client.
async fn events_on_sqlite(kind: &str) -> (Cluster, String, EventServiceClient<Channel>) {
    let cluster = Cluster::sqlite(LiveSettings::default()).await;
    let key = cluster.sdk_key(ENV, kind);
    let client = cluster.instances[0].events().await;
    (cluster, key, client)
}

#[tokio::test]
async fn batches_are_stored_once_and_counted_for_every_key_kind() {
    let (cluster, server_key, mut client) = events_on_sqlite("server").await;
    let instance = &cluster.instances[0];

    let first = publish(&mut client, &server_key, batch("b-1"))
        .await
        .unwrap();
    assert_eq!((first.accepted, first.duplicate), (5, false));
    assert_eq!(counts(&instance.storage, ENV).await, (1, 2, 2, 1));
    let tracked = track_events(&instance.storage).await;
    assert_eq!(tracked[0].value, Some(19.99));
    assert_eq!(tracked[0].at, 1_700_000_001_000);
    assert_eq!(tracked[0].data, Some(serde_json::json!({"sku": "A-1"})));

    // The retry of a batch: acknowledged as before, stored and counted once.
    let retry = publish(&mut client, &server_key, batch("b-1"))
        .await
        .unwrap();
    assert_eq!((retry.accepted, retry.duplicate), (5, true));
    assert_eq!(counts(&instance.storage, ENV).await, (1, 2, 2, 1));
    let label = format!("environment=\"{PROJECT}/{ENV}\"");
    for (kind, n) in [("exposure", 2.0), ("track", 2.0), ("summary", 1.0)] {
        let line = format!("vexil_events_total{{{label},type=\"{kind}\"}}");
        assert_eq!(instance.metric(&line).await, n, "{line}");
    }
    assert_eq!(
        instance
            .metric("vexil_event_batches_total{result=\"stored\"}")
            .await,
        1.0
    );
    assert_eq!(
        instance
            .metric("vexil_event_batches_total{result=\"duplicate\"}")
            .await,
        1.0
    );

    // Client and mobile keys publish too; the key names the environment, so the same
    // batch id in another environment is another batch.
    for (i, kind) in ["client", "mobile"].into_iter().enumerate() {
        let key = cluster.sdk_key(ENV, kind);
        let response = publish(&mut client, &key, batch(&format!("{kind}-1")))
            .await
            .unwrap();
        assert!(!response.duplicate, "{kind}");
        assert_eq!(counts(&instance.storage, ENV).await.1, 2 * (i as i64 + 2));
    }
    let dev_key = cluster.sdk_key("development", "mobile");
    let dev = publish(&mut client, &dev_key, batch("b-1")).await.unwrap();
    assert!(!dev.duplicate);
    assert_eq!(counts(&instance.storage, "development").await, (1, 2, 2, 1));
    drop(client);
    cluster.stop().await;
}

#[tokio::test]
async fn an_invalid_event_refuses_the_whole_batch() {
    let (cluster, key, mut client) = events_on_sqlite("server").await;
    let instance = &cluster.instances[0];

    type Edit = fn(&mut pb::PublishRequest);
    let cases: [(Edit, &str); 9] = [
        (
            |r| r.exposures[1].context = user(""),
            "exposures[1].context: context key must be a non-empty string",
        ),
        (|r| r.exposures[0].context = None, "exposures[0].context: "),
        (
            |r| r.exposures[0].flag_key = "f".repeat(257),
            "exposures[0].flag_key: ",
        ),
        (|r| r.track_events[1].time = None, "track_events[1].time: "),
        (
            |r| r.track_events[0].value = Some(f64::INFINITY),
            "track_events[0].value: ",
        ),
        (|r| r.track_events[1].name.clear(), "track_events[1].name: "),
        (
            |r| r.summaries[0].flag_key.clear(),
            "summaries[0].flag_key: ",
        ),
        (
            |r| r.summaries[0].counters[1].error_kind = 99,
            "summaries[0].counters[1].error_kind: ",
        ),
        (|r| r.batch_id = "x".repeat(129), "batch_id: "),
    ];
    for (edit, expected) in cases {
        let mut request = batch("refused");
        edit(&mut request);
        let status = publish(&mut client, &key, request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}");
        assert!(
            status.message().starts_with(expected),
            "expected `{expected}`, got `{}`",
            status.message()
        );
    }
    let mut too_many = batch("refused");
    too_many.track_events = vec![too_many.track_events[1].clone(); 10_001];
    let status = publish(&mut client, &key, too_many).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(counts(&instance.storage, ENV).await, (0, 0, 0, 0));

    // A refused batch left no trace of its id: once fixed, it is stored.
    let fixed = publish(&mut client, &key, batch("refused")).await.unwrap();
    assert!(!fixed.duplicate);

    // Bad keys.
    for bad in ["vxl-server-0000", "not-an-sdk-key"] {
        let status = publish(&mut client, bad, batch("b-2")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{bad}");
    }
    let status = client.publish(batch("b-2")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(counts(&instance.storage, ENV).await, (1, 2, 2, 1));
    drop(client);
    cluster.stop().await;
}

#[tokio::test]
async fn events_are_stored_once_on_postgres() {
    let Some(cluster) = Cluster::postgres(1, LiveSettings::default()).await else {
        return;
    };
    let instance = &cluster.instances[0];
    let key = cluster.sdk_key(ENV, "client");
    let mut client = instance.events().await;
    let first = publish(&mut client, &key, batch("pg-1")).await.unwrap();
    assert_eq!((first.accepted, first.duplicate), (5, false));
    let retry = publish(&mut client, &key, batch("pg-1")).await.unwrap();
    assert_eq!((retry.accepted, retry.duplicate), (5, true));
    assert_eq!(counts(&instance.storage, ENV).await, (1, 2, 2, 1));
    let tracked = track_events(&instance.storage).await;
    assert_eq!(tracked[0].value, Some(19.99));
    let status = publish(&mut client, &key, {
        let mut bad = batch("pg-2");
        bad.exposures[1].context = user("");
        bad
    })
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(counts(&instance.storage, ENV).await, (1, 2, 2, 1));
    drop(client);
    cluster.stop().await;
}
