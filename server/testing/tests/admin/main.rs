//! The admin API end to end: a real server over loopback gRPC.

mod costs;
mod history;
mod matrix;
mod ramps;
mod schedule;
mod tls;

use std::time::Duration;

use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_server::convert::json_to_value;

use vexil_testing::{
    ENV, ServerOptions, StartsWith, TestDatabase, TestServer, authed, expect_code, expect_error,
};

fn bool_flag(key: &str) -> pb::CreateFlagRequest {
    pb::CreateFlagRequest {
        project_key: "default".into(),
        key: key.into(),
        name: "New checkout".into(),
        kind: pb::FlagKind::Bool as i32,
        variations: vec![json_to_value(&json!(false)), json_to_value(&json!(true))],
        off_variation: Some(0),
        fallthrough: Some(pb::Serve {
            kind: Some(pb::serve::Kind::Variation(0)),
            experiment: None,
        }),
        ..Default::default()
    }
}

/// The root token and an admin client of `server`, after creating the boolean flag `key`.
async fn admin_with_flag(server: &TestServer, key: &str) -> (String, AdminServiceClient<Channel>) {
    let token = server.root_token();
    let mut admin = server.admin().await;
    admin
        .create_flag(authed(bool_flag(key), &token))
        .await
        .unwrap();
    (token, admin)
}

/// The default project's audit entries about resources of `kind` and with `key` (either left
/// out when empty), newest first.
async fn audit_entries(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    kind: &str,
    key: &str,
) -> Vec<pb::AuditEntry> {
    let request = pb::ListAuditEntriesRequest {
        project_key: "default".into(),
        resource_kind: kind.into(),
        resource_key: key.into(),
        ..Default::default()
    };
    let audit = admin
        .list_audit_entries(authed(request, token))
        .await
        .unwrap()
        .into_inner();
    audit.entries
}

fn clause(op: pb::Operator, attribute: &str, value: serde_json::Value) -> pb::Clause {
    pb::Clause {
        context_kind: "user".into(),
        attribute: attribute.into(),
        op: op as i32,
        values: vec![json_to_value(&value)],
        negate: false,
    }
}

/// A rule, with the segment's name as its id, serving `variation` to the members of
/// `segment`.
fn segment_rule(segment: &str, variation: u32) -> pb::Rule {
    pb::Rule {
        id: segment.into(),
        clauses: vec![pb::Clause {
            op: pb::Operator::SegmentMatch as i32,
            values: vec![json_to_value(&json!(segment))],
            ..Default::default()
        }],
        serve: serve(variation),
        ..Default::default()
    }
}

/// Writing `configuration` for flag `key` in `development`, at its `expected_version`.
fn development_update(
    key: &str,
    expected_version: i64,
    configuration: pb::FlagConfiguration,
) -> pb::UpdateFlagConfigurationRequest {
    pb::UpdateFlagConfigurationRequest {
        project_key: "default".into(),
        environment_key: "development".into(),
        key: key.into(),
        expected_version,
        configuration: Some(configuration),
    }
}

/// A server on SQLite, its root token and an admin client.
async fn sqlite_admin() -> (TestServer, String, AdminServiceClient<Channel>) {
    let server = TestServer::sqlite().await;
    let token = server.root_token();
    let admin = server.admin().await;
    (server, token, admin)
}

/// Reading flag `key` with its configurations in `environments`.
fn flag_in(key: &str, environments: &[&str]) -> pb::GetFlagRequest {
    pb::GetFlagRequest {
        project_key: "default".into(),
        key: key.into(),
        environment_keys: environments.iter().map(|&env| env.into()).collect(),
    }
}

/// Archiving (or, with `archived` false, restoring) flag `key` at its `expected_version`.
fn archiving(key: &str, expected_version: i64, archived: bool) -> pb::ArchiveFlagRequest {
    pb::ArchiveFlagRequest {
        project_key: "default".into(),
        key: key.into(),
        expected_version,
        archived,
    }
}

/// A token for `principal` with `role` in the default project.
fn token_request(principal: &str, role: pb::Role) -> pb::CreateAdminTokenRequest {
    pb::CreateAdminTokenRequest {
        principal: principal.into(),
        roles: vec![pb::RoleBinding {
            project_key: "default".into(),
            role: role as i32,
        }],
        ..Default::default()
    }
}

/// Creating `segment` in the environment `ENV`.
fn segment_creation(segment: pb::Segment) -> pb::CreateSegmentRequest {
    pb::CreateSegmentRequest {
        project_key: "default".into(),
        environment_key: ENV.into(),
        segment: Some(segment),
    }
}

/// Deleting the segment `key` of `environment` at `expected_version`.
fn segment_deletion(
    environment: &str,
    key: &str,
    expected_version: i64,
) -> pb::DeleteSegmentRequest {
    pb::DeleteSegmentRequest {
        project_key: "default".into(),
        environment_key: environment.into(),
        key: key.into(),
        expected_version,
    }
}

/// A server on SQLite whose scheduler looks for due changes and ramp steps every `interval`.
async fn server_scheduling_every(interval: Duration) -> TestServer {
    TestServer::start(
        TestDatabase::sqlite(),
        ServerOptions {
            schedule_interval: Some(interval),
            ..ServerOptions::default()
        },
    )
    .await
}

fn serve(variation: u32) -> Option<pb::Serve> {
    Some(pb::Serve {
        kind: Some(pb::serve::Kind::Variation(variation)),
        experiment: None,
    })
}

#[tokio::test]
async fn first_start_writes_private_credentials_and_the_token_works() {
    let server = TestServer::sqlite().await;
    let path = server.data_dir.join("credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "credentials must be owner-only");
        let secret = server.data_dir.join("jwt-secret");
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "signing secret must be owner-only");
    }
    for env in ["development", "production"] {
        for kind in ["server", "client", "mobile"] {
            assert!(
                server
                    .sdk_key(env, kind)
                    .starts_with(&format!("vxl-{kind}-"))
            );
        }
    }
    let token = server.root_token();
    let mut admin = server.admin().await;
    let envs = admin
        .list_environments(authed(
            pb::ListEnvironmentsRequest {
                project_key: "default".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<_> = envs.environments.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["development", "production"]);
    let keys = admin
        .list_sdk_keys(authed(
            pb::ListSdkKeysRequest {
                project_key: "default".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.keys.len(), 6);
    server.stop().await;
}

/// Creates, updates and toggles a flag, and finds each change in the audit log.
async fn flag_lifecycle(server: &TestServer) {
    let token = server.root_token();
    let mut admin = server.admin().await;
    let created = admin
        .create_flag(authed(bool_flag("new-checkout"), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.version, 1);
    let updated = admin
        .update_flag(authed(
            pb::UpdateFlagRequest {
                project_key: "default".into(),
                key: "new-checkout".into(),
                expected_version: created.version,
                name: "New checkout flow".into(),
                variations: created.variations.clone(),
                tags: vec!["checkout".into()],
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "New checkout flow");
    let flag = admin
        .get_flag(authed(flag_in("new-checkout", &["production"]), &token))
        .await
        .unwrap()
        .into_inner();
    let config = &flag.configurations[0];
    assert!(!config.on);
    let toggled = admin
        .toggle_flag(authed(
            pb::ToggleFlagRequest {
                project_key: "default".into(),
                environment_key: "production".into(),
                key: "new-checkout".into(),
                expected_version: config.version,
                on: true,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(toggled.on);
    let audit = audit_entries(&mut admin, &token, "", "new-checkout").await;
    let actions: Vec<_> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["flag_config.toggle", "flag.update", "flag.create"],
        "newest first"
    );
    assert!(audit.iter().all(|e| e.actor == "admin"));
    let toggle = &audit[0];
    assert_eq!(toggle.environment_key, "production");
    assert!(toggle.before.is_some() && toggle.after.is_some());
    let export = admin
        .export_environment(authed(
            pb::ExportEnvironmentRequest {
                project_key: "default".into(),
                environment_key: "production".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let ruleset: serde_json::Value = serde_json::from_str(&export.ruleset_json).unwrap();
    assert_eq!(ruleset["flags"][0]["key"], "new-checkout");
    assert_eq!(ruleset["flags"][0]["on"], true);
}

#[tokio::test]
async fn create_update_toggle_and_audit_on_sqlite() {
    TestServer::check_on_sqlite(flag_lifecycle).await;
}

#[tokio::test]
async fn create_update_toggle_and_audit_on_postgres() {
    TestServer::check_on_postgres(flag_lifecycle).await;
}

#[tokio::test]
async fn bad_input_is_refused_with_the_right_code_and_changes_nothing() {
    let server = TestServer::sqlite().await;
    let (token, mut admin) = admin_with_flag(&server, "checkout").await;
    let get_config = |mut admin: vexil_proto::v1::admin_service_client::AdminServiceClient<_>,
                      token: String| async move {
        admin
            .get_flag(authed(flag_in("checkout", &["development"]), &token))
            .await
            .unwrap()
            .into_inner()
            .configurations
            .remove(0)
    };
    let before = get_config(admin.clone(), token.clone()).await;
    // A write of checkout's configuration in development.
    let writer = admin.clone();
    let write_checkout = |expected_version, configuration| {
        let mut admin = writer.clone();
        let request = authed(
            development_update("checkout", expected_version, configuration),
            &token,
        );
        async move { admin.update_flag_configuration(request).await }
    };

    // An invalid regular expression in a rule.
    let bad_regex = pb::FlagConfiguration {
        on: true,
        off_variation: Some(0),
        rules: vec![pb::Rule {
            id: "r1".into(),
            clauses: vec![
                clause(pb::Operator::In, "country", json!("FR")),
                clause(pb::Operator::Matches, "email", json!("([a-z")),
            ],
            serve: serve(1),
            description: String::new(),
        }],
        fallthrough: serve(0),
        ..Default::default()
    };
    let status = expect_code(
        write_checkout(before.version, bad_regex).await,
        Code::InvalidArgument,
    );
    assert!(
        status.message().contains("checkout")
            && status.message().contains("rules[0].clauses[1].values[0]")
            && status.message().contains("regular expression"),
        "{}",
        status.message()
    );

    // An unknown variation.
    let unknown_variation = pb::FlagConfiguration {
        on: true,
        fallthrough: serve(7),
        ..Default::default()
    };
    expect_error(
        write_checkout(before.version, unknown_variation).await,
        Code::InvalidArgument,
        "fallthrough",
    );

    // A stale version.
    let good = pb::FlagConfiguration {
        on: true,
        fallthrough: serve(1),
        ..Default::default()
    };
    expect_error(
        write_checkout(before.version + 5, good.clone()).await,
        Code::Aborted,
        before.version.to_string().as_str(),
    );

    // A flag whose variations do not fit its kind.
    let mut wrong_kind = bool_flag("wrong-kind");
    wrong_kind.variations = vec![json_to_value(&json!("yes"))];
    expect_code(
        admin.create_flag(authed(wrong_kind, &token)).await,
        Code::InvalidArgument,
    );

    // A key with a space, named by its field.
    expect_error(
        admin
            .create_flag(authed(bool_flag("bad key"), &token))
            .await,
        Code::InvalidArgument,
        StartsWith("key: "),
    );

    // A name far too long.
    let mut long_name = bool_flag("long-name");
    long_name.name = "n".repeat(10_000);
    expect_error(
        admin.create_flag(authed(long_name, &token)).await,
        Code::InvalidArgument,
        StartsWith("name: "),
    );

    // An oversized request.
    let mut huge = bool_flag("huge");
    huge.description = "x".repeat(5 * 1024 * 1024);
    let status = admin.create_flag(authed(huge, &token)).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );

    // Nothing was written: same configuration, same version, no new flags, no audit entries.
    let after = get_config(admin.clone(), token.clone()).await;
    assert_eq!(after, before);
    let request = pb::ListFlagsRequest {
        project_key: "default".into(),
        ..Default::default()
    };
    let listed = admin.list_flags(authed(request, &token)).await.unwrap();
    let keys: Vec<String> = listed
        .into_inner()
        .flags
        .into_iter()
        .map(|f| f.key)
        .collect();
    assert_eq!(keys, ["checkout"]);
    let audit = audit_entries(&mut admin, &token, "", "checkout").await;
    assert_eq!(audit.len(), 1, "only the creation is in the log");

    // The good configuration with the right version goes through.
    let written = write_checkout(before.version, good)
        .await
        .unwrap()
        .into_inner();
    assert!(written.on);
    assert_eq!(written.version, before.version + 1);
    server.stop().await;
}

#[tokio::test]
async fn credentials_are_checked() {
    let server = TestServer::sqlite().await;
    let mut admin = server.admin().await;
    let list = || pb::ListProjectsRequest { page: None };

    let status = expect_code(
        admin.list_projects(tonic::Request::new(list())).await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("authorization"));
    expect_code(
        admin.list_projects(authed(list(), "not-a-token")).await,
        Code::Unauthenticated,
    );
    // A well-formed token signed with another secret.
    let forged = vexil_server::auth::Signer::new(b"some other secret entirely")
        .issue("mallory", None)
        .unwrap();
    expect_code(
        admin.list_projects(authed(list(), &forged.token)).await,
        Code::Unauthenticated,
    );
    for kind in ["server", "client", "mobile"] {
        let status = expect_code(
            admin
                .list_projects(authed(list(), &server.sdk_key("production", kind)))
                .await,
            Code::PermissionDenied,
        );
        assert!(status.message().contains("SDK key"));
    }

    // Roles are read at every call: a change takes effect at once.
    let editor = admin
        .create_admin_token(authed(
            token_request("dev", pb::Role::Editor),
            &server.root_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    let create = |key: &str| authed(bool_flag(key), &editor.secret);
    admin.create_flag(create("by-editor")).await.unwrap();
    admin
        .set_admin_token_roles(authed(
            pb::SetAdminTokenRolesRequest {
                id: editor.token.as_ref().unwrap().id.clone(),
                roles: vec![pb::RoleBinding {
                    project_key: "default".into(),
                    role: pb::Role::Viewer as i32,
                }],
            },
            &server.root_token(),
        ))
        .await
        .unwrap();
    expect_code(
        admin.create_flag(create("by-viewer")).await,
        Code::PermissionDenied,
    );

    // A revoked token stops working at once.
    let token = server.root_token();
    let created = admin
        .create_admin_token(authed(token_request("ci", pb::Role::Viewer), &token))
        .await
        .unwrap()
        .into_inner();
    admin
        .list_projects(authed(list(), &created.secret))
        .await
        .unwrap();
    admin
        .revoke_admin_token(authed(
            pb::RevokeAdminTokenRequest {
                id: created.token.unwrap().id,
            },
            &token,
        ))
        .await
        .unwrap();
    expect_code(
        admin.list_projects(authed(list(), &created.secret)).await,
        Code::Unauthenticated,
    );
    server.stop().await;
}

#[tokio::test]
async fn segments_are_validated_and_referenced() {
    let (server, token, mut admin) = sqlite_admin().await;
    let segment = pb::Segment {
        key: "beta".into(),
        included: vec![pb::SegmentTarget {
            context_kind: "user".into(),
            values: vec!["alice".into()],
        }],
        rules: vec![pb::SegmentRule {
            id: "s1".into(),
            clauses: vec![clause(
                pb::Operator::SemverGt,
                "app_version",
                json!("not-a-version"),
            )],
        }],
        ..Default::default()
    };
    expect_error(
        admin
            .create_segment(authed(
                pb::CreateSegmentRequest {
                    project_key: "default".into(),
                    environment_key: "development".into(),
                    segment: Some(segment.clone()),
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
        "segment \"beta\"",
    );
    let mut good = segment;
    good.rules.clear();
    let created = admin
        .create_segment(authed(
            pb::CreateSegmentRequest {
                project_key: "default".into(),
                environment_key: "development".into(),
                segment: Some(good),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.included[0].values, ["alice"]);

    // A flag that uses the segment; the segment cannot then be deleted.
    admin
        .create_flag(authed(bool_flag("beta-ui"), &token))
        .await
        .unwrap();
    let config = pb::FlagConfiguration {
        on: true,
        rules: vec![segment_rule("beta", 1)],
        fallthrough: serve(0),
        ..Default::default()
    };
    admin
        .update_flag_configuration(authed(development_update("beta-ui", 1, config), &token))
        .await
        .unwrap();
    expect_error(
        admin
            .delete_segment(authed(
                segment_deletion("development", "beta", created.version),
                &token,
            ))
            .await,
        Code::InvalidArgument,
        "beta-ui",
    );
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_answer() {
    let server = TestServer::sqlite().await;
    let channel = server.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    // The whole server, and each of its services by name.
    for service in [
        "",
        "vexil.v1.AdminService",
        "vexil.v1.EvaluationService",
        "vexil.v1.SyncService",
        "vexil.v1.EventService",
        "vexil.v1.ExperimentService",
    ] {
        let reply = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            reply.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "vexil.v1.AdminService",
        "vexil.v1.EvaluationService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }

    // The older v1alpha protocol, which some grpcurl versions try first.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let mut alpha = AlphaClient::new(server.channel().await);
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let reply = alpha
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("one reply");
    let Some(AlphaResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "vexil.v1.AdminService")
    );
    server.stop().await;
}

#[tokio::test]
async fn import_is_validated_and_archive_round_trips() {
    let (server, token, mut admin) = sqlite_admin().await;
    let import = |ruleset: serde_json::Value| pb::ImportEnvironmentRequest {
        project_key: "default".into(),
        environment_key: "development".into(),
        ruleset_json: ruleset.to_string(),
        expected_version: None,
    };
    let bad = json!({
        "flags": [{
            "key": "imported", "kind": "bool", "variations": [false, true], "on": true,
            "rules": [{"id": "r", "clauses": [{"attribute": "email", "op": "matches", "values": ["("]}],
                       "serve": {"variation": 1}}],
            "fallthrough": {"variation": 0}
        }],
        "segments": []
    });
    expect_error(
        admin.import_environment(authed(import(bad), &token)).await,
        Code::InvalidArgument,
        "rules[0].clauses[0].values[0]",
    );
    expect_code(
        admin
            .get_flag(authed(flag_in("imported", &[]), &token))
            .await,
        Code::NotFound,
    );
    let good = json!({
        "flags": [{
            "key": "imported", "kind": "bool", "variations": [false, true], "on": true,
            "fallthrough": {"variation": 1}
        }],
        "segments": [{"key": "staff", "included": [{"values": ["alice"]}]}]
    });
    let summary = admin
        .import_environment(authed(import(good), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.created_flags, ["imported"]);
    assert_eq!(summary.segments, ["staff"]);

    let flag = admin
        .archive_flag(authed(archiving("imported", 1, true), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(flag.archived);
    let flag = admin
        .archive_flag(authed(archiving("imported", flag.version, false), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(!flag.archived);
    server.stop().await;
}

/// Each admin token has its own rate limit: past the burst, RESOURCE_EXHAUSTED says when to
/// retry; the SDK-facing APIs are not counted.
#[tokio::test]
async fn an_admin_token_over_its_rate_limit_is_told_to_retry() {
    use vexil_server::rate_limit::AdminRateLimit;
    use vexil_testing::{ServerOptions, TestDatabase};

    let server = TestServer::start(
        TestDatabase::sqlite(),
        ServerOptions {
            admin_rate_limit: AdminRateLimit {
                per_second: 0.5,
                burst: 3.0,
            },
            ..ServerOptions::default()
        },
    )
    .await;
    let token = server.root_token();
    let mut admin = server.admin().await;
    for _ in 0..3 {
        admin
            .list_projects(authed(pb::ListProjectsRequest::default(), &token))
            .await
            .expect("within the burst");
    }
    let refused = admin
        .list_projects(authed(pb::ListProjectsRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("rate limit") && refused.message().contains("retry in"),
        "{}",
        refused.message()
    );
    // Evaluations with an SDK key are not admin calls.
    let mut evaluation = server.evaluation().await;
    let key = server.sdk_key(vexil_testing::ENV, "server");
    for _ in 0..10 {
        evaluation
            .evaluate_all(authed(
                pb::EvaluateAllRequest {
                    context: Some(pb::Context {
                        kind: "user".into(),
                        key: "alice".into(),
                        ..Default::default()
                    }),
                    flag_keys: vec![],
                },
                &key,
            ))
            .await
            .expect("SDK calls are not rate limited");
    }
    server.stop().await;
}
