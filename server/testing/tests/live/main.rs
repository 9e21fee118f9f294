//! Evaluation, Sync, Watch, the HTTP snapshot and propagation between instances, end to
//! end over loopback gRPC and HTTP.

mod events;
mod ofrep;
mod overload;
mod redis_cluster;
mod replica;
mod scheduled;
mod vectors;
mod web;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_proto::v1::evaluation_service_client::EvaluationServiceClient;
use vexil_server::convert::{json_to_value, value_to_json};
use vexil_server::live::LiveSettings;

use vexil_testing::{
    Cluster, ENV, PROJECT, PrivateRedis, TestServer, authed, config_version, create_bool_flag,
    eventually, expect_error, toggle, unique,
};

const WAIT: Duration = Duration::from_secs(10);

fn settings() -> LiveSettings {
    LiveSettings {
        heartbeat_interval: Duration::from_millis(300),
        ..LiveSettings::default()
    }
}

fn user(key: &str, attributes: Value) -> pb::Context {
    let fields = attributes
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect()
        })
        .unwrap_or_default();
    pb::Context {
        kind: "user".into(),
        key: key.into(),
        attributes: Some(prost_types::Struct { fields }),
        contexts: Vec::new(),
        redacted_attributes: Vec::new(),
    }
}

fn serve(variation: u32) -> Option<pb::Serve> {
    Some(pb::Serve {
        kind: Some(pb::serve::Kind::Variation(variation)),
        experiment: None,
    })
}

/// Turns a flag on with one rule: users whose `email` ends with `suffix` get false,
/// everyone else true.
async fn set_email_rule(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    key: &str,
    suffix: &str,
) {
    let version = config_version(admin, token, key).await;
    admin
        .update_flag_configuration(authed(
            pb::UpdateFlagConfigurationRequest {
                project_key: PROJECT.into(),
                environment_key: ENV.into(),
                key: key.into(),
                expected_version: version,
                configuration: Some(pb::FlagConfiguration {
                    on: true,
                    off_variation: Some(0),
                    rules: vec![pb::Rule {
                        id: "by-email".into(),
                        clauses: vec![pb::Clause {
                            context_kind: "user".into(),
                            attribute: "email".into(),
                            op: pb::Operator::EndsWith as i32,
                            values: vec![json_to_value(&json!(suffix))],
                            negate: false,
                        }],
                        serve: serve(0),
                        description: String::new(),
                    }],
                    fallthrough: serve(1),
                    ..Default::default()
                }),
            },
            token,
        ))
        .await
        .expect("update configuration");
}

/// An evaluation of `flag` with no default value and no expected kind.
fn plain_evaluation(flag: &str, context: Option<pb::Context>) -> pb::EvaluateRequest {
    pb::EvaluateRequest {
        flag_key: flag.into(),
        context,
        ..Default::default()
    }
}

async fn evaluate_bool(
    client: &mut EvaluationServiceClient<Channel>,
    key: &str,
    flag: &str,
    context: pb::Context,
) -> pb::EvaluationResult {
    client
        .evaluate(authed(
            pb::EvaluateRequest {
                flag_key: flag.into(),
                context: Some(context),
                default_value: Some(json_to_value(&json!(false))),
                kind: pb::FlagKind::Bool as i32,
            },
            key,
        ))
        .await
        .expect("evaluate")
        .into_inner()
        .result
        .expect("result")
}

/// Asserts that a CORS preflight answer allows each of `headers`.
#[track_caller]
fn assert_allows_headers(answer: &vexil_testing::HttpResponse, headers: &[&str]) {
    let allowed = answer.header("access-control-allow-headers").unwrap();
    for header in headers {
        assert!(allowed.contains(header), "{header} in {allowed}");
    }
}

fn value(result: &pb::EvaluationResult) -> Value {
    result
        .value
        .as_ref()
        .map(value_to_json)
        .unwrap_or(Value::Null)
}

/// The reason's kind; unspecified (0) when there is no reason or the kind is unknown.
fn reason_kind(result: &pb::EvaluationResult) -> pb::ReasonKind {
    let kind = result.reason.as_ref().map_or(0, |r| r.kind);
    pb::ReasonKind::try_from(kind).unwrap_or(pb::ReasonKind::Unspecified)
}

/// The reason's error kind; unspecified (0) when there is no reason or the kind is unknown.
fn error_kind(result: &pb::EvaluationResult) -> pb::ErrorKind {
    let kind = result.reason.as_ref().map_or(0, |r| r.error_kind);
    pb::ErrorKind::try_from(kind).unwrap_or(pb::ErrorKind::Unspecified)
}

/// A one-instance cluster on SQLite, its root token and an admin client of the instance.
async fn one_instance() -> (Cluster, String, AdminServiceClient<Channel>) {
    let cluster = Cluster::sqlite(settings()).await;
    let token = cluster.root_token();
    let admin = cluster.instances[0].admin().await;
    (cluster, token, admin)
}

/// [`one_instance`] with the flag `alpha` (off) created and held by the instance; and a
/// server SDK key.
async fn serving_alpha() -> (Cluster, String, AdminServiceClient<Channel>, String) {
    let (cluster, token, mut admin) = one_instance().await;
    create_bool_flag(&mut admin, &token, "alpha", false).await;
    cluster.instances[0].refresh_now().await;
    let server_key = cluster.sdk_key(ENV, "server");
    (cluster, token, admin, server_key)
}

#[tokio::test]
async fn evaluations_follow_writes_and_client_keys_see_only_client_side_values() {
    let (cluster, token, mut admin) = one_instance().await;
    let instance = &cluster.instances[0];
    let server_key = cluster.sdk_key(ENV, "server");
    let client_key = cluster.sdk_key(ENV, "client");
    create_bool_flag(&mut admin, &token, "server-only", false).await;
    create_bool_flag(&mut admin, &token, "public", true).await;
    let mut eval = instance.evaluation().await;

    // A write answers once this instance holds it: evaluations through it see it at once.
    let r = evaluate_bool(&mut eval, &server_key, "public", user("alice", json!({}))).await;
    assert_eq!(
        reason_kind(&r),
        pb::ReasonKind::Off,
        "off: the off variation"
    );
    assert_eq!(value(&r), json!(false));
    toggle(&mut admin, &token, "public", true).await;
    let r = evaluate_bool(&mut eval, &server_key, "public", user("alice", json!({}))).await;
    assert_eq!(value(&r), json!(true));
    assert_eq!(reason_kind(&r), pb::ReasonKind::Fallthrough);

    // A client key: the client-side flag is served, the other does not exist for it.
    let r = evaluate_bool(&mut eval, &client_key, "public", user("alice", json!({}))).await;
    assert_eq!(value(&r), json!(true));
    let r = evaluate_bool(
        &mut eval,
        &client_key,
        "server-only",
        user("alice", json!({})),
    )
    .await;
    assert_eq!(reason_kind(&r), pb::ReasonKind::Error);
    assert_eq!(error_kind(&r), pb::ErrorKind::FlagNotFound);
    assert_eq!(value(&r), json!(false), "the default is returned");
    assert_eq!(r.flag_version, 0, "nothing about the hidden flag leaks");

    // EvaluateAll: the server key sees both, the client key one.
    let visible: [(&str, &[&str]); 2] = [
        (&server_key, &["public", "server-only"]),
        (&client_key, &["public"]),
    ];
    for (key, flags) in visible {
        let request = pb::EvaluateAllRequest {
            context: Some(user("alice", json!({}))),
            flag_keys: vec![],
        };
        let all = eval
            .evaluate_all(authed(request, key))
            .await
            .unwrap()
            .into_inner();
        let keys: Vec<_> = all.results.iter().map(|r| r.flag_key.as_str()).collect();
        assert_eq!(keys, flags);
    }

    // Wrong type, unknown flag and invalid context are results, not failures.
    let r = eval
        .evaluate(authed(
            pb::EvaluateRequest {
                flag_key: "public".into(),
                context: Some(user("alice", json!({}))),
                default_value: Some(json_to_value(&json!("text"))),
                kind: pb::FlagKind::Unspecified as i32,
            },
            &server_key,
        ))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(error_kind(&r), pb::ErrorKind::WrongType);
    assert_eq!(value(&r), json!("text"));
    let r = evaluate_bool(&mut eval, &server_key, "public", user("", json!({}))).await;
    assert_eq!(error_kind(&r), pb::ErrorKind::InvalidContext);

    // Bad requests and bad keys fail with a status naming the problem.
    let alice = Some(user("alice", json!({})));
    expect_error(
        eval.evaluate(authed(plain_evaluation("", alice.clone()), &server_key))
            .await,
        Code::InvalidArgument,
        "flag_key",
    );
    expect_error(
        eval.evaluate(authed(plain_evaluation("public", None), &server_key))
            .await,
        Code::InvalidArgument,
        "context",
    );
    let not_keys = [
        ("vxl-server-0000", "an unknown key"),
        (token.as_str(), "admin tokens are not SDK keys"),
    ];
    for (secret, why) in not_keys {
        let status = eval
            .evaluate(authed(plain_evaluation("public", alice.clone()), secret))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{why}");
    }

    // Client and mobile keys never receive rules: Sync and the HTTP snapshot refuse them.
    let mut sync = instance.sync().await;
    for kind in ["client", "mobile"] {
        let key = cluster.sdk_key(ENV, kind);
        let status = sync
            .sync(authed(pb::SyncRequest::default(), &key))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{kind}");
        let response = instance
            .http_get(
                "/v1/snapshot",
                &[("Authorization", &format!("Bearer {key}"))],
            )
            .await;
        assert_eq!(response.status, 403, "{kind}");
        assert!(!String::from_utf8_lossy(&response.body).contains("fallthrough"));
    }
    drop(admin);
    cluster.stop().await;
}

/// The next event of a stream that is not a heartbeat, each message within `WAIT`.
async fn next_event<M, E>(
    stream: &mut tonic::Streaming<M>,
    event: fn(M) -> Option<E>,
    is_heartbeat: fn(&E) -> bool,
) -> E {
    loop {
        let message = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("stream not ended");
        let event = event(message).expect("event");
        if !is_heartbeat(&event) {
            return event;
        }
    }
}

async fn next_watch(stream: &mut tonic::Streaming<pb::WatchResponse>) -> pb::watch_response::Event {
    use pb::watch_response::Event;
    next_event(stream, |m| m.event, |e| matches!(e, Event::Heartbeat(_))).await
}

#[tokio::test]
async fn watch_sends_exactly_the_changes_that_affect_the_context() {
    let (cluster, token, mut admin) = one_instance().await;
    let instance = &cluster.instances[0];
    let client_key = cluster.sdk_key(ENV, "client");
    create_bool_flag(&mut admin, &token, "checkout", true).await;
    create_bool_flag(&mut admin, &token, "banner", true).await;
    toggle(&mut admin, &token, "checkout", true).await;
    toggle(&mut admin, &token, "banner", true).await;
    instance.refresh_now().await;

    let mut eval = instance.evaluation().await;
    let alice = user("alice", json!({"email": "alice@example.com"}));
    let (mut stream, values) = open_watch(&mut eval, &client_key, alice, &[]).await;
    let keys: Vec<_> = values.results.iter().map(|r| r.flag_key.as_str()).collect();
    assert_eq!(keys, ["banner", "checkout"]);
    assert!(values.results.iter().all(|r| value(r) == json!(true)));

    // A rule that does not match alice changes nothing for her: no message (heartbeats
    // only). The next change that does affect her is the next message.
    set_email_rule(&mut admin, &token, "checkout", "@other.org").await;
    toggle(&mut admin, &token, "banner", false).await;
    let pb::watch_response::Event::Changes(changes) = next_watch(&mut stream).await else {
        panic!("expected changes");
    };
    let updated: Vec<_> = changes
        .updated
        .iter()
        .map(|r| (r.flag_key.as_str(), value(r)))
        .collect();
    assert_eq!(updated, [("banner", json!(false))]);
    assert!(changes.removed.is_empty());

    // A rule that matches her changes her value and reason.
    set_email_rule(&mut admin, &token, "checkout", "@example.com").await;
    let pb::watch_response::Event::Changes(changes) = next_watch(&mut stream).await else {
        panic!("expected changes");
    };
    assert_eq!(changes.updated.len(), 1);
    assert_eq!(changes.updated[0].flag_key, "checkout");
    assert_eq!(value(&changes.updated[0]), json!(false));
    assert_eq!(reason_kind(&changes.updated[0]), pb::ReasonKind::RuleMatch);

    // A flag no longer client-side disappears from a client key's stream.
    let flag = admin
        .get_flag(authed(
            pb::GetFlagRequest {
                project_key: PROJECT.into(),
                key: "banner".into(),
                environment_keys: vec![],
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    admin
        .update_flag(authed(
            pb::UpdateFlagRequest {
                project_key: PROJECT.into(),
                key: "banner".into(),
                expected_version: flag.version,
                name: flag.name.clone(),
                variations: flag.variations.clone(),
                client_side: false,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap();
    let pb::watch_response::Event::Changes(changes) = next_watch(&mut stream).await else {
        panic!("expected changes");
    };
    assert!(changes.updated.is_empty());
    assert_eq!(changes.removed, ["banner"]);

    // Heartbeats keep an idle stream alive.
    let beat = tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        beat.event,
        Some(pb::watch_response::Event::Heartbeat(_))
    ));
    drop(stream);
    drop(admin);
    cluster.stop().await;
}

async fn next_sync(stream: &mut tonic::Streaming<pb::SyncResponse>) -> pb::sync_response::Event {
    use pb::sync_response::Event;
    next_event(stream, |m| m.event, |e| matches!(e, Event::Heartbeat(_))).await
}

/// Opens a Watch of `flag_keys` (all when empty) for `context`, and reads its first message:
/// the values of the watched flags.
async fn open_watch(
    eval: &mut EvaluationServiceClient<Channel>,
    key: &str,
    context: pb::Context,
    flag_keys: &[&str],
) -> (tonic::Streaming<pb::WatchResponse>, pb::WatchValues) {
    let request = pb::WatchRequest {
        context: Some(context),
        flag_keys: flag_keys.iter().map(|&flag| flag.into()).collect(),
        version: 0,
    };
    let mut stream = eval
        .watch(authed(request, key))
        .await
        .expect("open watch")
        .into_inner();
    let pb::watch_response::Event::Values(values) = next_watch(&mut stream).await else {
        panic!("a watch starts with the values");
    };
    (stream, values)
}

async fn open_sync(
    instance: &TestServer,
    key: &str,
    version: i64,
) -> tonic::Streaming<pb::SyncResponse> {
    instance
        .sync()
        .await
        .sync(authed(
            pb::SyncRequest {
                version,
                sdk_name: "live-tests".into(),
                sdk_version: "0".into(),
            },
            key,
        ))
        .await
        .expect("open sync")
        .into_inner()
}

#[tokio::test]
async fn sync_sends_a_snapshot_then_patches_and_resumes_from_a_version() {
    let (cluster, token, mut admin, server_key) = serving_alpha().await;
    let instance = &cluster.instances[0];

    let mut stream = open_sync(instance, &server_key, 0).await;
    let pb::sync_response::Event::Snapshot(snapshot) = next_sync(&mut stream).await else {
        panic!("a new client gets a snapshot");
    };
    assert_eq!(snapshot.flags.len(), 1);
    assert_eq!(snapshot.flags[0].key, "alpha");
    assert!(
        snapshot.flags[0].fallthrough.is_some(),
        "server keys get rules"
    );
    let mut held = snapshot.version;

    toggle(&mut admin, &token, "alpha", true).await;
    let pb::sync_response::Event::Patch(patch) = next_sync(&mut stream).await else {
        panic!("a change is a patch");
    };
    assert_eq!(patch.from_version, held);
    assert_eq!(patch.upserted_flags.len(), 1);
    assert!(patch.upserted_flags[0].on);
    held = patch.version;

    // Cut the stream, change twice, reconnect with the held version: one patch with both.
    drop(stream);
    create_bool_flag(&mut admin, &token, "beta", false).await;
    let alpha = admin
        .get_flag(authed(
            pb::GetFlagRequest {
                project_key: PROJECT.into(),
                key: "alpha".into(),
                environment_keys: vec![],
            },
            &token,
        ))
        .await
        .expect("get flag")
        .into_inner();
    admin
        .delete_flag(authed(
            pb::DeleteFlagRequest {
                project_key: PROJECT.into(),
                key: "alpha".into(),
                expected_version: alpha.version,
            },
            &token,
        ))
        .await
        .expect("delete flag");
    instance.refresh_now().await;
    let mut stream = open_sync(instance, &server_key, held).await;
    let pb::sync_response::Event::Patch(patch) = next_sync(&mut stream).await else {
        panic!("a client resuming from its version gets a patch, not a snapshot");
    };
    assert_eq!(patch.from_version, held);
    let upserted: Vec<_> = patch
        .upserted_flags
        .iter()
        .map(|f| f.key.as_str())
        .collect();
    assert_eq!(upserted, ["beta"]);
    assert_eq!(patch.deleted_flags, ["alpha"]);
    held = patch.version;

    // A current client gets a heartbeat at once; one claiming a future version a snapshot.
    let mut current = open_sync(instance, &server_key, held).await;
    let first = tokio::time::timeout(WAIT, current.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match first.event {
        Some(pb::sync_response::Event::Heartbeat(beat)) => {
            assert_eq!(beat.environment_version, held)
        }
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    let mut future = open_sync(instance, &server_key, held + 100).await;
    assert!(matches!(
        next_sync(&mut future).await,
        pb::sync_response::Event::Snapshot(_)
    ));
    expect_error(
        instance
            .sync()
            .await
            .sync(authed(
                pb::SyncRequest {
                    version: -1,
                    ..Default::default()
                },
                &server_key,
            ))
            .await,
        Code::InvalidArgument,
        "version",
    );
    drop((stream, current, future, admin));
    cluster.stop().await;
}

#[tokio::test]
async fn http_snapshot_has_etag_304_and_gzip() {
    use std::io::Read;
    let (cluster, token, mut admin, server_key) = serving_alpha().await;
    let instance = &cluster.instances[0];
    let auth = format!("Bearer {server_key}");

    let plain = instance
        .http_get("/v1/snapshot", &[("Authorization", &auth)])
        .await;
    assert_eq!(plain.status, 200);
    let body: Value = serde_json::from_slice(&plain.body).expect("snapshot is JSON");
    assert_eq!(body["flags"][0]["key"], "alpha");
    let etag = plain.header("etag").expect("etag").to_owned();
    assert_eq!(etag, format!("\"{}\"", body["version"]));
    assert!(plain.header("cache-control").unwrap().contains("public"));

    let conditional = [
        ("Authorization", auth.as_str()),
        ("If-None-Match", etag.as_str()),
    ];
    let not_modified = instance.http_get("/v1/snapshot", &conditional).await;
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());

    let zipped = instance
        .http_get(
            "/v1/snapshot",
            &[("Authorization", &auth), ("Accept-Encoding", "gzip")],
        )
        .await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(zipped.body.as_slice())
        .read_to_string(&mut text)
        .expect("gzip body");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), body);

    // After a change the old ETag no longer matches.
    toggle(&mut admin, &token, "alpha", true).await;
    instance.refresh_now().await;
    let changed = instance.http_get("/v1/snapshot", &conditional).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));

    let missing = instance.http_get("/v1/snapshot", &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(instance.http_get("/healthz", &[]).await.status, 200);
    eventually(WAIT, "ready", || async {
        instance.http_get("/readyz", &[]).await.status == 200
    })
    .await;
    let metrics = instance.http_get("/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("vexil_cache_requests_total{layer=\"l3\",result=\"hit\"} 1"));
    drop(admin);
    cluster.stop().await;
}

/// Live settings of instances sharing the Redis at `url`, whose version checks are far
/// enough apart that a change arriving quickly must have come through Redis, and close
/// enough to keep the tests' Redis-down phases brief.
fn through_redis(url: String, prefix: &str) -> LiveSettings {
    LiveSettings {
        redis_url: Some(url),
        redis_prefix: prefix.to_owned(),
        version_check_interval: Duration::from_secs(4),
        heartbeat_interval: Duration::from_millis(500),
        ..LiveSettings::default()
    }
}

/// The count of changes an instance learnt of by a Redis notice.
const BY_NOTICE: &str = "vexil_propagation_lag_seconds_count{source=\"notice\"}";
/// The count of changes an instance learnt of by its periodic version check.
const BY_CHECK: &str = "vexil_propagation_lag_seconds_count{source=\"check\"}";

/// The acceptance test of propagation: three instances on one Postgres and one Redis.
#[tokio::test]
async fn three_instances_propagate_through_redis_and_survive_its_loss() {
    let mut redis = PrivateRedis::start();
    let prefix = unique("vexil_live");
    let live = through_redis(redis.url(), &prefix);
    let Some(cluster) = Cluster::postgres(3, live).await else {
        return;
    };
    let (a, b, c) = (
        &cluster.instances[0],
        &cluster.instances[1],
        &cluster.instances[2],
    );
    let token = cluster.root_token();
    let server_key = cluster.sdk_key(ENV, "server");
    let client_key = cluster.sdk_key(ENV, "client");
    let mut admin = a.admin().await;
    create_bool_flag(&mut admin, &token, "checkout", true).await;
    for instance in [a, b, c] {
        instance.refresh_now().await;
        eventually(WAIT, "redis subscription up", || async {
            instance.metric("vexil_redis_connected").await == 1.0
        })
        .await;
    }

    let mut sync_c = open_sync(c, &server_key, 0).await;
    let pb::sync_response::Event::Snapshot(snapshot) = next_sync(&mut sync_c).await else {
        panic!("snapshot first");
    };
    let mut held = snapshot.version;
    let mut eval_b = b.evaluation().await;
    let alice = user("alice", json!({}));
    let (mut watch_b, values) = open_watch(&mut eval_b, &client_key, alice, &["checkout"]).await;
    assert_eq!(value(&values.results[0]), json!(false));

    // 1. Through Redis: the change reaches C's Sync and B's Watch, by notice.
    let started = Instant::now();
    held = toggle_and_follow(&mut admin, &token, true, &mut sync_c, held, &mut watch_b).await;
    eprintln!("propagation with redis: {:?}", started.elapsed());
    assert_counted(BY_NOTICE, [(c, "C"), (b, "B")]).await;

    // 2. Redis down: serving goes on, and the change still arrives by the periodic check.
    redis.stop();
    let r = evaluate_bool(&mut eval_b, &server_key, "checkout", user("bob", json!({}))).await;
    assert_eq!(value(&r), json!(true), "serving continues from memory");
    let started = Instant::now();
    held = toggle_and_follow(&mut admin, &token, false, &mut sync_c, held, &mut watch_b).await;
    eprintln!("propagation without redis: {:?}", started.elapsed());
    assert_counted(BY_CHECK, [(c, "C"), (b, "B")]).await;

    // 3. Redis back: the subscription comes back by itself and notices are fast again.
    redis.restart();
    for instance in [a, b, c] {
        eventually(
            Duration::from_secs(20),
            "redis subscription back",
            || async { instance.metric("vexil_redis_connected").await == 1.0 },
        )
        .await;
    }
    let notices_before = c.metric(BY_NOTICE).await;
    let checks_before = c.metric(BY_CHECK).await;
    held = toggle_and_follow(&mut admin, &token, true, &mut sync_c, held, &mut watch_b).await;
    assert_eq!(c.metric(BY_NOTICE).await, notices_before + 1.0);
    assert_eq!(c.metric(BY_CHECK).await, checks_before);

    // 4. A stream cut mid-way resumes from its version on another instance, by patch.
    drop(sync_c);
    toggle(&mut admin, &token, "checkout", false).await;
    b.refresh_now().await;
    let mut resumed = open_sync(b, &server_key, held).await;
    let pb::sync_response::Event::Patch(patch) = next_sync(&mut resumed).await else {
        panic!("resuming gets a patch, not a snapshot");
    };
    assert_eq!(patch.from_version, held);
    assert!(!patch.upserted_flags[0].on);

    // 5. A new instance warms up from the Redis snapshot (L2) written after the last change.
    drop((resumed, watch_b, eval_b, admin));
    let mut cluster = cluster;
    let d = cluster.add_instance().await;
    eventually(WAIT, "the new instance is ready", || async {
        cluster.instances[d].http_get("/readyz", &[]).await.status == 200
    })
    .await;
    assert!(
        cluster.instances[d]
            .metric("vexil_cache_requests_total{layer=\"l2\",result=\"hit\"}")
            .await
            >= 1.0,
        "the new instance loaded the environment from Redis"
    );

    // 6. Redis keeps one snapshot of the environment for long: each change's snapshot makes
    //    the one before expire within a minute.
    for on in [true, false, true] {
        let mut admin = cluster.instances[0].admin().await;
        toggle(&mut admin, &token, "checkout", on).await;
    }
    let pattern = format!("{prefix}:snapshot:{PROJECT}/{ENV}:*");
    eventually(WAIT, "one long-lived snapshot", || async {
        let keys = redis_cli(&redis, &["--scan", "--pattern", &pattern]);
        let long_lived = keys
            .lines()
            .filter(|key| {
                let ttl: i64 = redis_cli(&redis, &["ttl", key])
                    .trim()
                    .parse()
                    .unwrap_or(-2);
                ttl > 60
            })
            .count();
        keys.lines().count() >= 2 && long_lived == 1
    })
    .await;
    cluster.stop().await;
}

/// Toggles `checkout` and follows the change on both streams: a patch from the version the
/// Sync stream holds, and the flag's new value on the Watch stream. Returns the new version.
async fn toggle_and_follow(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    on: bool,
    sync: &mut tonic::Streaming<pb::SyncResponse>,
    held: i64,
    watch: &mut tonic::Streaming<pb::WatchResponse>,
) -> i64 {
    toggle(admin, token, "checkout", on).await;
    let pb::sync_response::Event::Patch(patch) = next_sync(sync).await else {
        panic!("patch");
    };
    assert_eq!(patch.from_version, held);
    let pb::watch_response::Event::Changes(changes) = next_watch(watch).await else {
        panic!("changes");
    };
    assert_eq!(value(&changes.updated[0]), json!(on));
    patch.version
}

/// Asserts that each instance, named for the message, counted at least one `counter`.
async fn assert_counted(counter: &str, instances: [(&TestServer, &str); 2]) {
    for (instance, name) in instances {
        let count = instance.metric(counter).await;
        assert!(count >= 1.0, "{name} counted no {counter}");
    }
}

/// The output of `redis-cli` against the test's Redis.
fn redis_cli(redis: &PrivateRedis, args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (scripts/services.sh installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What these tests ask of an instance beyond the shared server's API.
trait RefreshNow {
    async fn refresh_now(&self);
}

impl RefreshNow for TestServer {
    /// Waits until the instance holds the store's current version of the environment (the
    /// server gets there on its own, by notice or periodic check).
    async fn refresh_now(&self) {
        let target = self
            .storage
            .environment_version(PROJECT, ENV)
            .await
            .expect("environment exists");
        let metric = format!("vexil_environment_version{{environment=\"{PROJECT}/{ENV}\"}}");
        eventually(WAIT, "the instance holds the latest version", || async {
            self.metric(&metric).await as i64 >= target
        })
        .await;
    }
}
