//! History and rollback over gRPC: versions listed, shown and compared; a rollback is
//! validated like any write and reaches a connected SDK; an environment rolls back as of a
//! time in one write.

use std::time::Duration;

use serde_json::json;
use tonic::Code;
use vexil_engine::{Context, SingleContext};
use vexil_proto::model::value_to_json;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;

use vexil_testing::{
    StartsWith, TestServer, authed, eventually_blocking, expect_code, expect_error, flag_resource,
};

use super::{admin_with_flag, clause, segment_creation, segment_deletion, segment_rule, serve};

const ENV: &str = "production";

fn number(n: i64) -> Option<pb::VersionSelector> {
    Some(pb::VersionSelector {
        selector: Some(pb::version_selector::Selector::Number(n)),
    })
}

fn at(ts: prost_types::Timestamp) -> Option<pb::VersionSelector> {
    Some(pb::VersionSelector {
        selector: Some(pb::version_selector::Selector::At(ts)),
    })
}

/// Restoring version `to` of flag `checkout` in `ENV`, at its `expected_version`.
fn checkout_rollback(to: i64, expected_version: i64) -> pb::RollbackRequest {
    pb::RollbackRequest {
        resource: Some(flag_resource("checkout")),
        to: number(to),
        expected_version,
    }
}

type Admin = AdminServiceClient<tonic::transport::Channel>;

/// The version of flag `checkout` in `ENV` that `version` selects.
async fn checkout_version(
    admin: &mut Admin,
    token: &str,
    version: Option<pb::VersionSelector>,
) -> pb::ResourceVersion {
    let request = pb::GetVersionRequest {
        resource: Some(flag_resource("checkout")),
        version,
    };
    admin
        .get_version(authed(request, token))
        .await
        .unwrap()
        .into_inner()
}

async fn configure(admin: &mut Admin, token: &str, expected: i64, rules: Vec<pb::Rule>) -> i64 {
    admin
        .update_flag_configuration(authed(
            pb::UpdateFlagConfigurationRequest {
                project_key: "default".into(),
                environment_key: ENV.into(),
                key: "checkout".into(),
                expected_version: expected,
                configuration: Some(pb::FlagConfiguration {
                    on: true,
                    off_variation: Some(0),
                    rules,
                    fallthrough: serve(1),
                    ..Default::default()
                }),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .version
}

async fn history_round_trip(server: &TestServer) {
    let (token, mut admin) = admin_with_flag(server, "checkout").await;
    admin
        .create_segment(authed(
            segment_creation(pb::Segment {
                key: "beta".into(),
                included: vec![pb::SegmentTarget {
                    context_kind: "user".into(),
                    values: vec!["bob".into()],
                }],
                ..Default::default()
            }),
            &token,
        ))
        .await
        .unwrap();
    // v2: on for everyone; v3: except the beta segment.
    let v2 = configure(&mut admin, &token, 1, vec![]).await;
    let v3 = configure(&mut admin, &token, v2, vec![segment_rule("beta", 0)]).await;
    assert_eq!((v2, v3), (2, 3));

    let listed = admin
        .list_versions(authed(
            pb::ListVersionsRequest {
                resource: Some(flag_resource("checkout")),
                page: None,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let numbers: Vec<i64> = listed.versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert!(listed.versions.iter().all(|v| v.actor == "admin"));
    assert_eq!(listed.versions[2].action, "flag.create");

    // The version in force at v2's time is v2, and holds the flag as SDKs got it.
    let recorded_v2 = listed.versions[1].recorded_at.unwrap();
    let shown = checkout_version(&mut admin, &token, at(recorded_v2)).await;
    assert_eq!(shown.version, 2);
    let model = value_to_json(shown.model.as_ref().unwrap());
    assert_eq!(model["key"], "checkout");
    assert_eq!(model["on"], true);
    assert_eq!(model["version"], 2);
    assert_eq!(rule_count(&model), 0);

    let diff = admin
        .diff_versions(authed(
            pb::DiffVersionsRequest {
                resource: Some(flag_resource("checkout")),
                from: number(1),
                to: number(3),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let paths: Vec<&str> = diff.differences.iter().map(|d| d.path.as_str()).collect();
    // The model leaves out empty lists: version 1 has no "rules" at all.
    assert_eq!(paths, ["/fallthrough/variation", "/on", "/rules"]);
    assert_eq!(diff.differences[2].before, None, "the rules were added");
    assert_eq!(
        value_to_json(diff.differences[2].after.as_ref().unwrap())[0]["id"],
        "beta"
    );

    // An SDK connected to the server sees bob get false (the beta rule), then true again
    // when the flag is rolled back to v2.
    let client = server.ready_client(ENV, "server", |c| c).await;
    let bob = Context::from(SingleContext::new("user", "bob").unwrap());
    let wait = Duration::from_secs(10);
    eventually_blocking(wait, "bob is in the beta rule", || {
        !client.bool_variation("checkout", &bob, true)
    })
    .await;
    let rolled = admin
        .rollback(authed(checkout_rollback(2, 3), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rolled.version, 4);
    assert_eq!(rolled.action, "flag_config.rollback");
    assert_eq!(
        rule_count(&value_to_json(rolled.model.as_ref().unwrap())),
        0
    );
    eventually_blocking(wait, "the rollback reaches the SDK", || {
        client.bool_variation("checkout", &bob, false)
    })
    .await;
    client.close();

    // Stale: ABORTED, nothing written.
    expect_code(
        admin
            .rollback(authed(checkout_rollback(3, 3), &token))
            .await,
        Code::Aborted,
    );

    // Version 3 refers to the segment; once it is deleted, restoring v3 is refused by the
    // same validation as any write, naming the problem.
    admin
        .delete_segment(authed(segment_deletion(ENV, "beta", 1), &token))
        .await
        .unwrap();
    expect_error(
        admin
            .rollback(authed(checkout_rollback(3, 4), &token))
            .await,
        Code::InvalidArgument,
        "beta",
    );

    // The environment as of v2's time: a dry run says what would change, then one write
    // does it. The segment created before that time but deleted since cannot come back.
    configure(&mut admin, &token, 4, vec![]).await;
    let dry = rollback_environment(&mut admin, &token, recorded_v2, None, true).await;
    assert!(dry.restored.is_empty(), "v5 has v2's content: {dry:?}");
    configure(&mut admin, &token, 5, vec![in_beta_of("nobody")]).await;
    let dry = rollback_environment(&mut admin, &token, recorded_v2, None, true).await;
    let restored: Vec<(&str, i64)> = dry
        .restored
        .iter()
        .map(|r| (r.key.as_str(), r.from_version))
        .collect();
    assert_eq!(restored, [("checkout", 2)]);
    let before = checkout_version(&mut admin, &token, number(6)).await;
    assert_eq!(
        before.action, "flag_config.update",
        "a dry run writes nothing"
    );
    let done =
        rollback_environment(&mut admin, &token, recorded_v2, Some(dry.version), false).await;
    assert_eq!(done.version, dry.version + 1);
    let newest = checkout_version(&mut admin, &token, number(7)).await;
    assert_eq!(newest.action, "environment.rollback");
    assert_eq!(
        rule_count(&value_to_json(newest.model.as_ref().unwrap())),
        0
    );
}

async fn rollback_environment(
    admin: &mut Admin,
    token: &str,
    at: prost_types::Timestamp,
    expected_version: Option<i64>,
    dry_run: bool,
) -> pb::RollbackEnvironmentResponse {
    admin
        .rollback_environment(authed(
            pb::RollbackEnvironmentRequest {
                project_key: "default".into(),
                environment_key: ENV.into(),
                at: Some(at),
                expected_version,
                dry_run,
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// A rule matching one user key, serving false.
fn in_beta_of(key: &str) -> pb::Rule {
    pb::Rule {
        id: "one".into(),
        clauses: vec![clause(pb::Operator::In, "key", json!(key))],
        serve: serve(0),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_rollback_on_sqlite() {
    TestServer::check_on_sqlite(history_round_trip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_rollback_on_postgres() {
    TestServer::check_on_postgres(history_round_trip).await;
}

#[tokio::test]
async fn bad_history_requests_name_the_field() {
    let server = TestServer::sqlite().await;
    let token = server.root_token();
    let mut admin = server.admin().await;
    let cases: Vec<(&str, pb::GetVersionRequest)> = vec![
        (
            "resource:",
            pb::GetVersionRequest {
                resource: None,
                version: number(1),
            },
        ),
        (
            "resource.kind:",
            pb::GetVersionRequest {
                resource: Some(pb::VersionedResource {
                    kind: pb::VersionedKind::Unspecified as i32,
                    ..flag_resource("x")
                }),
                version: number(1),
            },
        ),
        (
            "resource.key:",
            pb::GetVersionRequest {
                resource: Some(flag_resource("")),
                version: number(1),
            },
        ),
        (
            "version:",
            pb::GetVersionRequest {
                resource: Some(flag_resource("x")),
                version: None,
            },
        ),
        (
            "version.number:",
            pb::GetVersionRequest {
                resource: Some(flag_resource("x")),
                version: number(0),
            },
        ),
    ];
    for (field, request) in cases {
        let status = expect_code(
            admin.get_version(authed(request, &token)).await,
            Code::InvalidArgument,
        );
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
    expect_code(
        admin
            .get_version(authed(
                pb::GetVersionRequest {
                    resource: Some(flag_resource("missing")),
                    version: number(1),
                },
                &token,
            ))
            .await,
        Code::NotFound,
    );
    expect_error(
        admin
            .rollback_environment(authed(
                pb::RollbackEnvironmentRequest {
                    project_key: "default".into(),
                    environment_key: ENV.into(),
                    at: None,
                    expected_version: None,
                    dry_run: true,
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
        StartsWith("at:"),
    );
    server.stop().await;
}

/// How many rules a flag model has (the model leaves out an empty list).
fn rule_count(model: &serde_json::Value) -> usize {
    model["rules"].as_array().map_or(0, Vec::len)
}
