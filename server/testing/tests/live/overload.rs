//! An instance asked for more than its limits: the excess is refused with
//! RESOURCE_EXHAUSTED, at once, and everything else goes on (the connection included).

use vexil_server::overload::StreamLimits;

use vexil_testing::{ServerOptions, TestDatabase};

use super::*;

async fn limited_server(max_inflight_requests: usize, stream_limits: StreamLimits) -> TestServer {
    TestServer::start(
        TestDatabase::sqlite(),
        ServerOptions {
            http: true,
            live: LiveSettings {
                stream_limits,
                ..LiveSettings::default()
            },
            max_inflight_requests: Some(max_inflight_requests),
            ..ServerOptions::default()
        },
    )
    .await
}

fn watch_request() -> pb::WatchRequest {
    pb::WatchRequest {
        context: Some(pb::Context {
            kind: "user".into(),
            key: "alice".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn streams_beyond_the_limits_of_a_key_and_of_the_instance_are_refused() {
    let server = limited_server(
        0,
        StreamLimits {
            total: 3,
            per_key: 2,
        },
    )
    .await;
    server.create_bool_flag("checkout", true).await;
    let client = server.sdk_key("production", "client");
    let mobile = server.sdk_key("production", "mobile");
    let other = server.sdk_key("development", "client");
    let mut evaluation = server.evaluation().await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let stream = evaluation
            .watch(authed(watch_request(), &client))
            .await
            .expect("within the key's limit")
            .into_inner();
        open.push(stream);
    }
    expect_error(
        evaluation.watch(authed(watch_request(), &client)).await,
        Code::ResourceExhausted,
        "this SDK key has 2 streams open",
    );
    // Another key still gets one: the instance's third and last.
    open.push(
        evaluation
            .watch(authed(watch_request(), &mobile))
            .await
            .expect("another key")
            .into_inner(),
    );
    let refused = evaluation
        .watch(authed(watch_request(), &other))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("3 streams open"), "{refused:?}");
    // Sync streams count too.
    let refused = server
        .sync()
        .await
        .sync(authed(
            pb::SyncRequest::default(),
            &server.sdk_key("production", "server"),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // The open streams work; the refusals are counted.
    let first = open[0].message().await.unwrap().unwrap();
    assert!(matches!(
        first.event,
        Some(pb::watch_response::Event::Values(_))
    ));
    let shed = |reason: &'static str| {
        let server = &server;
        async move {
            server
                .metric(&format!("vexil_requests_shed_total{{reason=\"{reason}\"}}"))
                .await
        }
    };
    assert_eq!(shed("streams_per_key").await, 1.0);
    assert_eq!(shed("streams").await, 2.0);
    // A stream that ends gives its place back.
    open.remove(0);
    let deadline = Instant::now() + WAIT;
    loop {
        match evaluation.watch(authed(watch_request(), &client)).await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(
                    Instant::now() < deadline,
                    "the ended stream's place never came back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn calls_beyond_the_inflight_limit_are_refused_at_once_and_the_connection_survives() {
    let server = limited_server(1, StreamLimits::default()).await;
    server.create_bool_flag("checkout", false).await;
    let key = server.sdk_key("production", "server");
    let evaluation = server.evaluation().await;
    let request = || {
        authed(
            pb::EvaluateRequest {
                flag_key: "checkout".into(),
                context: watch_request().context,
                default_value: Some(json_to_value(&json!(true))),
                ..Default::default()
            },
            &key,
        )
    };
    // Bursts of 200 calls on one connection, with one allowed in flight: some are refused
    // (a burst is retried in the rare case the server kept up), none fails otherwise.
    let mut refused = 0;
    for _ in 0..5 {
        let calls = (0..200).map(|_| {
            let mut client = evaluation.clone();
            let request = request();
            tokio::spawn(async move { client.evaluate(request).await })
        });
        for call in calls.collect::<Vec<_>>() {
            match call.await.unwrap() {
                Ok(response) => assert!(response.into_inner().result.is_some()),
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    assert!(status.message().contains("overloaded"), "{status:?}");
                    refused += 1;
                }
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no call was refused");
    assert_eq!(
        server
            .metric("vexil_requests_shed_total{reason=\"inflight\"}")
            .await,
        f64::from(refused)
    );
    // The same connection serves the next call; health checks are never refused.
    let mut client = evaluation.clone();
    assert!(client.evaluate(request()).await.is_ok());
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let checks = (0..50).map(|_| {
        let mut health = health.clone();
        tokio::spawn(async move {
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
        })
    });
    for check in checks.collect::<Vec<_>>() {
        assert!(check.await.unwrap().is_ok());
    }
    assert!(
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok()
    );
}
