//! What a write costs the server: database transactions and ruleset compiles, counted.

use serde_json::json;
use vexil_proto::v1 as pb;
use vexil_server::convert::json_to_value;
use vexil_server::live::LiveSettings;
use vexil_testing::{ServerOptions, TestDatabase, TestServer, authed, create_environment};

/// The server's counters of the work a call makes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cost {
    reads: u64,
    writes: u64,
    full_validations: f64,
    patched_validations: f64,
    full_serve_builds: f64,
    patched_serve_builds: f64,
}

async fn cost(server: &TestServer) -> Cost {
    let transactions = server.storage.transactions();
    let builds = |how: &'static str, purpose: &'static str| async move {
        server
            .metric(&format!(
                "vexil_ruleset_builds_total{{how=\"{how}\",purpose=\"{purpose}\"}}"
            ))
            .await
    };
    Cost {
        reads: transactions.reads,
        writes: transactions.writes,
        full_validations: builds("full", "validate").await,
        patched_validations: builds("patch", "validate").await,
        full_serve_builds: builds("full", "serve").await,
        patched_serve_builds: builds("patch", "serve").await,
    }
}

#[tokio::test]
async fn an_update_flag_on_three_environments_costs_one_patched_compile_each() {
    let server = TestServer::start(
        TestDatabase::sqlite(),
        ServerOptions {
            http: true,
            // The periodic version check reads the store too: keep it out of the count.
            live: LiveSettings {
                version_check_interval: std::time::Duration::from_secs(3600),
                ..LiveSettings::default()
            },
            ..ServerOptions::default()
        },
    )
    .await;
    let token = server.root_token();
    let mut admin = server.admin().await;
    let staging_key = create_environment(&mut admin, &token, "staging").await;
    let flag = admin
        .create_flag(authed(
            pb::CreateFlagRequest {
                project_key: "default".into(),
                key: "checkout".into(),
                kind: pb::FlagKind::String as i32,
                variations: vec![json_to_value(&json!("a")), json_to_value(&json!("b"))],
                off_variation: Some(0),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    // Every environment is held (loaded) before counting.
    for key in [
        server.sdk_key("development", "server"),
        server.sdk_key("production", "server"),
        staging_key,
    ] {
        let response = server
            .http_get(
                "/v1/snapshot",
                &[("authorization", &format!("Bearer {key}"))],
            )
            .await;
        assert_eq!(response.status, 200);
    }
    let before = cost(&server).await;
    admin
        .update_flag(authed(
            pb::UpdateFlagRequest {
                project_key: "default".into(),
                key: "checkout".into(),
                expected_version: flag.version,
                name: "Checkout".into(),
                variations: vec![
                    json_to_value(&json!("a")),
                    json_to_value(&json!("b")),
                    json_to_value(&json!("c")),
                ],
                client_side: true,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap();
    let after = cost(&server).await;
    let spent = Cost {
        reads: after.reads - before.reads,
        writes: after.writes - before.writes,
        full_validations: after.full_validations - before.full_validations,
        patched_validations: after.patched_validations - before.patched_validations,
        full_serve_builds: after.full_serve_builds - before.full_serve_builds,
        patched_serve_builds: after.patched_serve_builds - before.patched_serve_builds,
    };
    eprintln!("UpdateFlag, 3 environments: {spent:?}");
    // One write; the checks patch the rulesets the instance holds, one flag each: nothing
    // is loaded from the store or compiled whole to check the change.
    assert_eq!(spent.writes, 1, "{spent:?}");
    assert_eq!(spent.full_validations, 0.0, "{spent:?}");
    assert_eq!(spent.patched_validations, 3.0, "{spent:?}");
    // Serving the change: one patch per environment, no full rebuild.
    assert_eq!(spent.full_serve_builds, 0.0, "{spent:?}");
    assert_eq!(spent.patched_serve_builds, 3.0, "{spent:?}");
    // Reads: the caller's token, the flag and the environments (3), then the change log of
    // each environment as the instance catches up (3); the write's own change notice may
    // reach an environment in the same moment and read its log once more (up to 3). None
    // of them loads a whole ruleset. Seen: 6 to 8.
    assert!(spent.reads <= 9, "{spent:?}");
    server.stop().await;
}
