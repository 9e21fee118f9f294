//! Scheduled changes over gRPC: checked when scheduled, applied at their time (reaching a
//! connected SDK), marked failed with the reason when they no longer validate, cancelled.

use std::time::Duration;

use tonic::Code;
use vexil_engine::{Context, SingleContext};
use vexil_proto::v1 as pb;
use vexil_server::convert::timestamp;
use vexil_server::storage::now_millis;

use vexil_testing::{
    StartsWith, authed, bool_flag_request, eventually, eventually_blocking, expect_code,
    expect_error,
};

use super::{
    audit_entries, segment_creation, segment_deletion, segment_rule, serve, server_scheduling_every,
};

const ENV: &str = "production";
const WAIT: Duration = Duration::from_secs(10);

fn toggle(key: &str, run_at: i64, on: bool) -> pb::ScheduleChangeRequest {
    pb::ScheduleChangeRequest {
        project_key: "default".into(),
        environment_key: ENV.into(),
        key: key.into(),
        run_at: Some(timestamp(run_at)),
        edit: Some(pb::schedule_change_request::Edit::On(on)),
        comment: "launch".into(),
    }
}

/// A configuration, on, serving true to the members of `segment` and false to the others.
fn segment_configuration(segment: &str) -> pb::FlagConfiguration {
    pb::FlagConfiguration {
        on: true,
        off_variation: Some(0),
        rules: vec![segment_rule(segment, 1)],
        fallthrough: serve(0),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_changes_are_checked_applied_failed_and_cancelled() {
    let server = server_scheduling_every(Duration::from_millis(100)).await;
    let token = server.root_token();
    let mut admin = server.admin().await;
    admin
        // Off: false; on: true (its fallthrough).
        .create_flag(authed(bool_flag_request("launch", false), &token))
        .await
        .unwrap();

    // Refused when scheduled if it would not validate then: a rule on a missing segment.
    expect_error(
        admin
            .schedule_change(authed(
                pb::ScheduleChangeRequest {
                    edit: Some(pb::schedule_change_request::Edit::Configuration(
                        segment_configuration("beta"),
                    )),
                    ..toggle("launch", now_millis(), true)
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
        "beta",
    );
    expect_error(
        admin
            .schedule_change(authed(
                pb::ScheduleChangeRequest {
                    run_at: None,
                    ..toggle("launch", 0, true)
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
        StartsWith("run_at:"),
    );
    expect_code(
        admin
            .schedule_change(authed(toggle("missing", now_millis(), true), &token))
            .await,
        Code::NotFound,
    );

    // Applied at its time; a connected SDK sees it.
    let client = server.ready_client(ENV, "server", |c| c).await;
    let ann = Context::from(SingleContext::new("user", "ann").unwrap());
    assert!(!client.bool_variation("launch", &ann, false));
    let run_at = now_millis() + 1_000;
    let scheduled = admin
        .schedule_change(authed(toggle("launch", run_at, true), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scheduled.state, pb::ScheduledChangeState::Pending as i32);
    assert_eq!(scheduled.created_by, "admin");
    eventually_blocking(WAIT, "the scheduled change reaches the SDK", || {
        client.bool_variation("launch", &ann, false)
    })
    .await;
    assert!(now_millis() >= run_at, "not before its time");
    let applied = list(&mut admin, &token).await;
    assert_eq!(applied[0].state, pb::ScheduledChangeState::Applied as i32);
    assert_eq!(applied[0].applied_version, 2);
    client.close();

    // Valid when scheduled, invalid when it runs: marked failed with the reason.
    admin
        .create_segment(authed(
            segment_creation(pb::Segment {
                key: "beta".into(),
                ..Default::default()
            }),
            &token,
        ))
        .await
        .unwrap();
    let doomed = admin
        .schedule_change(authed(
            pb::ScheduleChangeRequest {
                edit: Some(pb::schedule_change_request::Edit::Configuration(
                    segment_configuration("beta"),
                )),
                ..toggle("launch", now_millis() + 1_000, true)
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    admin
        .delete_segment(authed(segment_deletion(ENV, "beta", 1), &token))
        .await
        .unwrap();
    let mut admin_view = admin.clone();
    let token_view = token.clone();
    eventually(WAIT, "the change that no longer validates fails", || {
        let mut admin = admin_view.clone();
        let token = token_view.clone();
        async move {
            list(&mut admin, &token)
                .await
                .iter()
                .any(|x| x.id == doomed.id && x.state == pb::ScheduledChangeState::Failed as i32)
        }
    })
    .await;
    let failed = list(&mut admin_view, &token)
        .await
        .into_iter()
        .find(|x| x.id == doomed.id)
        .unwrap();
    assert!(failed.outcome.contains("beta"), "{}", failed.outcome);
    assert_eq!(failed.applied_version, 0);

    // Cancelled before its time: never applied; cancelling twice is refused.
    let later = admin
        .schedule_change(authed(
            toggle("launch", now_millis() + 3_600_000, false),
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let cancel = || pb::CancelScheduledChangeRequest {
        project_key: "default".into(),
        id: later.id,
    };
    let cancelled = admin
        .cancel_scheduled_change(authed(cancel(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state, pb::ScheduledChangeState::Cancelled as i32);
    expect_code(
        admin
            .cancel_scheduled_change(authed(cancel(), &token))
            .await,
        Code::FailedPrecondition,
    );
    let audit = audit_entries(&mut admin, &token, "scheduled_change", "").await;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "scheduled_change.cancel",
            "scheduled_change.create",
            "scheduled_change.fail",
            "scheduled_change.create",
            "scheduled_change.create"
        ]
    );
    drop(admin_view);
    server.stop().await;
}

async fn list(
    admin: &mut vexil_proto::v1::admin_service_client::AdminServiceClient<
        tonic::transport::Channel,
    >,
    token: &str,
) -> Vec<pb::ScheduledChange> {
    admin
        .list_scheduled_changes(authed(
            pb::ListScheduledChangesRequest {
                project_key: "default".into(),
                environment_key: ENV.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .changes
}
