//! Progressive rollouts over gRPC: checked when started, advanced by the server step by
//! step until every context of a connected SDK gets the new variation; paused, resumed.

use std::time::Duration;

use tonic::Code;
use vexil_engine::{Context, SingleContext};
use vexil_proto::v1 as pb;

use vexil_testing::{authed, eventually_blocking, expect_code, expect_error};

use super::{admin_with_flag, server_scheduling_every};

const ENV: &str = "production";

fn step(percent: f64, millis: u64) -> pb::RampStep {
    pb::RampStep {
        percent,
        duration: Some(prost_types::Duration {
            seconds: 0,
            nanos: i32::try_from(millis * 1_000_000).unwrap(),
        }),
    }
}

fn start(variation: u32, steps: Vec<pb::RampStep>, expected_version: i64) -> pb::StartRampRequest {
    pb::StartRampRequest {
        project_key: "default".into(),
        environment_key: ENV.into(),
        key: "checkout".into(),
        variation,
        baseline: 0,
        steps,
        expected_version,
        guard: None,
    }
}

fn set_state(id: i64, state: pb::RampState) -> pb::SetRampStateRequest {
    pb::SetRampStateRequest {
        project_key: "default".into(),
        id,
        state: state as i32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_is_advanced_by_the_server_until_everyone_has_the_variation() {
    let server = server_scheduling_every(Duration::from_millis(50)).await;
    // [false, true], serving false to everyone once on.
    let (token, mut admin) = admin_with_flag(&server, "checkout").await;
    admin
        .toggle_flag(authed(
            pb::ToggleFlagRequest {
                project_key: "default".into(),
                environment_key: ENV.into(),
                key: "checkout".into(),
                expected_version: 1,
                on: true,
            },
            &token,
        ))
        .await
        .unwrap();

    // Refused: a variation the flag does not have (the engine's check), a stale version, a
    // step that does not grow.
    expect_code(
        admin
            .start_ramp(authed(start(5, vec![step(100.0, 0)], 2), &token))
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        admin
            .start_ramp(authed(start(1, vec![step(100.0, 0)], 1), &token))
            .await,
        Code::Aborted,
    );
    expect_error(
        admin
            .start_ramp(authed(
                start(1, vec![step(50.0, 0), step(50.0, 0), step(100.0, 0)], 2),
                &token,
            ))
            .await,
        Code::InvalidArgument,
        "steps[1].percent",
    );

    // Paused at once: nothing moves until resumed.
    let client = server.ready_client(ENV, "server", |c| c).await;
    let users: Vec<Context> = (0..200)
        .map(|i| Context::from(SingleContext::new("user", &format!("u{i}")).unwrap()))
        .collect();
    let ramp = admin
        .start_ramp(authed(
            start(1, vec![step(10.0, 300), step(50.0, 300), step(100.0, 0)], 2),
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ramp.state, pb::RampState::Running as i32);
    assert!(ramp.next_step_at.is_some());
    let paused = admin
        .set_ramp_state(authed(set_state(ramp.id, pb::RampState::Paused), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.state, pb::RampState::Paused as i32);
    assert!(paused.next_step_at.is_none());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let listed = admin
        .list_ramps(authed(
            pb::ListRampsRequest {
                project_key: "default".into(),
                environment_key: ENV.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.ramps[0].step, 0, "a paused ramp does not advance");
    let some = users
        .iter()
        .filter(|u| client.bool_variation("checkout", *u, false))
        .count();
    assert!(some > 0 && some < 60, "about 10 % of 200: {some}");

    // Resumed: the server takes the steps; every context ends with the new variation.
    admin
        .set_ramp_state(authed(set_state(ramp.id, pb::RampState::Running), &token))
        .await
        .unwrap();
    eventually_blocking(
        Duration::from_secs(10),
        "everyone gets the new variation",
        || {
            users
                .iter()
                .all(|u| client.bool_variation("checkout", u, false))
        },
    )
    .await;
    client.close();
    let done = admin
        .list_ramps(authed(
            pb::ListRampsRequest {
                project_key: "default".into(),
                environment_key: ENV.into(),
                key: "checkout".into(),
                page: None,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.ramps[0].state, pb::RampState::Completed as i32);
    assert_eq!(done.ramps[0].step, 2);
    expect_error(
        admin
            .set_ramp_state(authed(set_state(ramp.id, pb::RampState::Paused), &token))
            .await,
        Code::FailedPrecondition,
        "completed",
    );
    expect_code(
        admin
            .set_ramp_state(authed(
                set_state(ramp.id, pb::RampState::Unspecified),
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    server.stop().await;
}
