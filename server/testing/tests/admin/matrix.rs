//! Every role against every admin RPC: allowed, or `PERMISSION_DENIED`.

use tonic::Code;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_server::convert::json_to_value;

use vexil_testing::{TestServer, authed};

/// The callers of the matrix, in column order.
/// `sdk` is a server SDK key and `none` an empty credential: both are refused everywhere.
const CALLERS: [&str; 7] = ["viewer", "editor", "admin", "other", "root", "sdk", "none"];

/// Who may call: the least role on project `default`; `Root` needs admin on every project;
/// `Anyone` is any valid admin token (the answer is filtered).
#[derive(Debug, Clone, Copy)]
enum Needs {
    Viewer,
    Editor,
    Admin,
    Root,
    Anyone,
}

impl Needs {
    fn allows(self, caller: &str) -> bool {
        match self {
            Needs::Anyone => !matches!(caller, "sdk" | "none"),
            Needs::Root => caller == "root",
            Needs::Admin => matches!(caller, "admin" | "root"),
            Needs::Editor => matches!(caller, "editor" | "admin" | "root"),
            Needs::Viewer => matches!(caller, "viewer" | "editor" | "admin" | "root"),
        }
    }
}

async fn token_for(
    admin: &mut AdminServiceClient<tonic::transport::Channel>,
    root: &str,
    principal: &str,
    project: &str,
    role: pb::Role,
) -> String {
    admin
        .create_admin_token(authed(
            pb::CreateAdminTokenRequest {
                principal: principal.into(),
                roles: vec![pb::RoleBinding {
                    project_key: project.into(),
                    role: role as i32,
                }],
                ..Default::default()
            },
            root,
        ))
        .await
        .unwrap()
        .into_inner()
        .secret
}

fn flag_request(key: &str) -> pb::CreateFlagRequest {
    pb::CreateFlagRequest {
        project_key: "default".into(),
        key: key.into(),
        kind: pb::FlagKind::Bool as i32,
        variations: vec![
            json_to_value(&serde_json::json!(false)),
            json_to_value(&serde_json::json!(true)),
        ],
        ..Default::default()
    }
}

/// The flag every caller's history calls are about.
fn shared_flag() -> pb::VersionedResource {
    pb::VersionedResource {
        project_key: "default".into(),
        environment_key: "development".into(),
        kind: pb::VersionedKind::Flag as i32,
        key: "shared".into(),
    }
}

fn version_one() -> pb::VersionSelector {
    pb::VersionSelector {
        selector: Some(pb::version_selector::Selector::Number(1)),
    }
}

fn project(key: &str) -> pb::CreateProjectRequest {
    pb::CreateProjectRequest {
        key: key.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn role_by_rpc_matrix() {
    let server = TestServer::sqlite().await;
    let root = server.root_token();
    let mut admin = server.admin().await;
    admin
        .create_project(authed(project("other"), &root))
        .await
        .unwrap();
    admin
        .create_flag(authed(flag_request("shared"), &root))
        .await
        .unwrap();
    let tokens = [
        token_for(&mut admin, &root, "viewer", "default", pb::Role::Viewer).await,
        token_for(&mut admin, &root, "editor", "default", pb::Role::Editor).await,
        token_for(&mut admin, &root, "admin", "default", pb::Role::Admin).await,
        token_for(&mut admin, &root, "other", "other", pb::Role::Admin).await,
        root.clone(),
        server.sdk_key("development", "server"),
        String::new(),
    ];

    let mut failures = Vec::new();
    let mut checked = 0;
    for (caller, token) in CALLERS.iter().zip(&tokens) {
        let mut a = admin.clone();
        let t = token.as_str();
        let p = || "default".to_owned();
        let d = || "development".to_owned();
        // Writes use stale versions or unknown ids where a success would change the
        // fixture; what matters is whether the call got past authorization.
        let results: Vec<(&str, Needs, Result<(), tonic::Status>)> = vec![
            (
                "CreateProject",
                Needs::Root,
                a.create_project(authed(project(&format!("p-{caller}")), t))
                    .await
                    .map(drop),
            ),
            (
                "GetProject",
                Needs::Viewer,
                a.get_project(authed(pb::GetProjectRequest { key: p() }, t))
                    .await
                    .map(drop),
            ),
            (
                "ListProjects",
                Needs::Anyone,
                a.list_projects(authed(pb::ListProjectsRequest { page: None }, t))
                    .await
                    .map(drop),
            ),
            (
                "UpdateProject",
                Needs::Admin,
                a.update_project(authed(
                    pb::UpdateProjectRequest {
                        key: p(),
                        expected_version: 999,
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "DeleteProject",
                Needs::Admin,
                a.delete_project(authed(
                    pb::DeleteProjectRequest {
                        key: p(),
                        expected_version: 999,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "CreateEnvironment",
                Needs::Admin,
                a.create_environment(authed(
                    pb::CreateEnvironmentRequest {
                        project_key: p(),
                        key: format!("e-{caller}"),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "GetEnvironment",
                Needs::Viewer,
                a.get_environment(authed(
                    pb::GetEnvironmentRequest {
                        project_key: p(),
                        key: d(),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ListEnvironments",
                Needs::Viewer,
                a.list_environments(authed(pb::ListEnvironmentsRequest { project_key: p() }, t))
                    .await
                    .map(drop),
            ),
            (
                "UpdateEnvironment",
                Needs::Admin,
                a.update_environment(authed(
                    pb::UpdateEnvironmentRequest {
                        project_key: p(),
                        key: d(),
                        expected_version: 999,
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "DeleteEnvironment",
                Needs::Admin,
                a.delete_environment(authed(
                    pb::DeleteEnvironmentRequest {
                        project_key: p(),
                        key: d(),
                        expected_version: 999,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "CreateFlag",
                Needs::Editor,
                a.create_flag(authed(flag_request(&format!("f-{caller}")), t))
                    .await
                    .map(drop),
            ),
            (
                "GetFlag",
                Needs::Viewer,
                a.get_flag(authed(
                    pb::GetFlagRequest {
                        project_key: p(),
                        key: "shared".into(),
                        environment_keys: vec![],
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ListFlags",
                Needs::Viewer,
                a.list_flags(authed(
                    pb::ListFlagsRequest {
                        project_key: p(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "UpdateFlag",
                Needs::Editor,
                a.update_flag(authed(
                    pb::UpdateFlagRequest {
                        project_key: p(),
                        key: "shared".into(),
                        expected_version: 999,
                        variations: flag_request("x").variations,
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ToggleFlag",
                Needs::Editor,
                a.toggle_flag(authed(
                    pb::ToggleFlagRequest {
                        project_key: p(),
                        environment_key: d(),
                        key: "shared".into(),
                        expected_version: 999,
                        on: true,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ArchiveFlag",
                Needs::Editor,
                a.archive_flag(authed(
                    pb::ArchiveFlagRequest {
                        project_key: p(),
                        key: "shared".into(),
                        expected_version: 999,
                        archived: true,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "DeleteFlag",
                Needs::Editor,
                a.delete_flag(authed(
                    pb::DeleteFlagRequest {
                        project_key: p(),
                        key: "shared".into(),
                        expected_version: 999,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "UpdateFlagConfiguration",
                Needs::Editor,
                a.update_flag_configuration(authed(
                    pb::UpdateFlagConfigurationRequest {
                        project_key: p(),
                        environment_key: d(),
                        key: "shared".into(),
                        expected_version: 999,
                        configuration: Some(pb::FlagConfiguration {
                            fallthrough: Some(pb::Serve {
                                kind: Some(pb::serve::Kind::Variation(0)),
                                experiment: None,
                            }),
                            ..Default::default()
                        }),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "CreateSegment",
                Needs::Editor,
                a.create_segment(authed(
                    pb::CreateSegmentRequest {
                        project_key: p(),
                        environment_key: d(),
                        segment: Some(pb::Segment {
                            key: format!("s-{caller}"),
                            ..Default::default()
                        }),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "GetSegment",
                Needs::Viewer,
                a.get_segment(authed(
                    pb::GetSegmentRequest {
                        project_key: p(),
                        environment_key: d(),
                        key: "none".into(),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ListSegments",
                Needs::Viewer,
                a.list_segments(authed(
                    pb::ListSegmentsRequest {
                        project_key: p(),
                        environment_key: d(),
                        page: None,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "UpdateSegment",
                Needs::Editor,
                a.update_segment(authed(
                    pb::UpdateSegmentRequest {
                        project_key: p(),
                        environment_key: d(),
                        expected_version: 999,
                        segment: Some(pb::Segment {
                            key: "none".into(),
                            ..Default::default()
                        }),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "DeleteSegment",
                Needs::Editor,
                a.delete_segment(authed(
                    pb::DeleteSegmentRequest {
                        project_key: p(),
                        environment_key: d(),
                        key: "none".into(),
                        expected_version: 999,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "IssueSdkKey",
                Needs::Admin,
                a.issue_sdk_key(authed(
                    pb::IssueSdkKeyRequest {
                        project_key: p(),
                        environment_key: d(),
                        kind: pb::SdkKeyKind::Server as i32,
                        name: String::new(),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ListSdkKeys",
                Needs::Admin,
                a.list_sdk_keys(authed(
                    pb::ListSdkKeysRequest {
                        project_key: p(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "RevokeSdkKey",
                Needs::Admin,
                a.revoke_sdk_key(authed(
                    pb::RevokeSdkKeyRequest {
                        project_key: p(),
                        id: 999_999,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "RotateSdkKey",
                Needs::Admin,
                a.rotate_sdk_key(authed(
                    pb::RotateSdkKeyRequest {
                        project_key: p(),
                        id: 999_999,
                        old_key_expires_at: None,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "CreateAdminToken",
                Needs::Admin,
                a.create_admin_token(authed(
                    pb::CreateAdminTokenRequest {
                        principal: "new".into(),
                        roles: vec![pb::RoleBinding {
                            project_key: p(),
                            role: pb::Role::Viewer as i32,
                        }],
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ListAdminTokens",
                Needs::Root,
                a.list_admin_tokens(authed(
                    pb::ListAdminTokensRequest {
                        include_revoked: false,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "SetAdminTokenRoles",
                Needs::Root,
                a.set_admin_token_roles(authed(
                    pb::SetAdminTokenRolesRequest {
                        id: "tok_none".into(),
                        roles: vec![],
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "RevokeAdminToken",
                Needs::Root,
                a.revoke_admin_token(authed(
                    pb::RevokeAdminTokenRequest {
                        id: "tok_none".into(),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ListAuditEntries",
                Needs::Viewer,
                a.list_audit_entries(authed(
                    pb::ListAuditEntriesRequest {
                        project_key: p(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "EraseContext",
                Needs::Admin,
                a.erase_context(authed(
                    pb::EraseContextRequest {
                        project_key: p(),
                        context_key: "nobody".into(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ExportEnvironment",
                Needs::Viewer,
                a.export_environment(authed(
                    pb::ExportEnvironmentRequest {
                        project_key: p(),
                        environment_key: d(),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ImportEnvironment",
                Needs::Admin,
                a.import_environment(authed(
                    pb::ImportEnvironmentRequest {
                        project_key: p(),
                        environment_key: d(),
                        ruleset_json: r#"{"flags":[],"segments":[]}"#.into(),
                        expected_version: None,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ListVersions",
                Needs::Viewer,
                a.list_versions(authed(
                    pb::ListVersionsRequest {
                        resource: Some(shared_flag()),
                        page: None,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "GetVersion",
                Needs::Viewer,
                a.get_version(authed(
                    pb::GetVersionRequest {
                        resource: Some(shared_flag()),
                        version: Some(version_one()),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "DiffVersions",
                Needs::Viewer,
                a.diff_versions(authed(
                    pb::DiffVersionsRequest {
                        resource: Some(shared_flag()),
                        from: Some(version_one()),
                        to: Some(version_one()),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "Rollback",
                Needs::Editor,
                a.rollback(authed(
                    pb::RollbackRequest {
                        resource: Some(shared_flag()),
                        to: Some(version_one()),
                        expected_version: 999,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "RollbackEnvironment",
                Needs::Editor,
                a.rollback_environment(authed(
                    pb::RollbackEnvironmentRequest {
                        project_key: p(),
                        environment_key: d(),
                        at: Some(prost_types::Timestamp::default()),
                        expected_version: None,
                        dry_run: true,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ScheduleChange",
                Needs::Editor,
                a.schedule_change(authed(
                    pb::ScheduleChangeRequest {
                        project_key: p(),
                        environment_key: d(),
                        key: "shared".into(),
                        // Far ahead: the matrix must not change the fixture.
                        run_at: Some(prost_types::Timestamp {
                            seconds: 4_102_444_800,
                            nanos: 0,
                        }),
                        edit: Some(pb::schedule_change_request::Edit::On(false)),
                        comment: String::new(),
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ListScheduledChanges",
                Needs::Viewer,
                a.list_scheduled_changes(authed(
                    pb::ListScheduledChangesRequest {
                        project_key: p(),
                        environment_key: d(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "StartRamp",
                Needs::Editor,
                a.start_ramp(authed(
                    pb::StartRampRequest {
                        project_key: p(),
                        environment_key: d(),
                        key: "shared".into(),
                        variation: 1,
                        baseline: 0,
                        steps: vec![pb::RampStep {
                            percent: 100.0,
                            duration: None,
                        }],
                        // Stale: the matrix must not change the fixture.
                        expected_version: 999,
                        guard: None,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "ListRamps",
                Needs::Viewer,
                a.list_ramps(authed(
                    pb::ListRampsRequest {
                        project_key: p(),
                        environment_key: d(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "SetRampState",
                Needs::Editor,
                a.set_ramp_state(authed(
                    pb::SetRampStateRequest {
                        project_key: p(),
                        id: 999_999,
                        state: pb::RampState::Paused as i32,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "GetRampResults",
                Needs::Viewer,
                a.get_ramp_results(authed(
                    pb::GetRampResultsRequest {
                        project_key: p(),
                        id: 999_999,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
            (
                "CancelScheduledChange",
                Needs::Editor,
                a.cancel_scheduled_change(authed(
                    pb::CancelScheduledChangeRequest {
                        project_key: p(),
                        id: 999_999,
                    },
                    t,
                ))
                .await
                .map(drop),
            ),
        ];
        for (rpc, needs, result) in results {
            checked += 1;
            let code = result.err().map(|s| s.code());
            let denied = matches!(
                code,
                Some(Code::PermissionDenied) | Some(Code::Unauthenticated)
            );
            if needs.allows(caller) == denied {
                failures.push(format!(
                    "{rpc} as {caller}: expected {}, got {code:?}",
                    if needs.allows(caller) {
                        "allowed"
                    } else {
                        "PERMISSION_DENIED"
                    }
                ));
            } else if !needs.allows(caller) {
                let expected = if *caller == "none" {
                    Code::Unauthenticated
                } else {
                    Code::PermissionDenied
                };
                if code != Some(expected) {
                    failures.push(format!(
                        "{rpc} as {caller}: expected {expected:?}, got {code:?}"
                    ));
                }
            }
        }
    }
    assert_eq!(
        checked,
        47 * CALLERS.len(),
        "every RPC of AdminService is in the matrix"
    );
    assert!(
        failures.is_empty(),
        "role matrix failures:\n{}",
        failures.join("\n")
    );
    server.stop().await;
}
