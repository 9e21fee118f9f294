//! Scheduled changes under three instances on one Postgres: each is applied exactly once,
//! also when an instance crashes as the changes fall due.

use std::time::Duration;

use vexil_proto::v1 as pb;
use vexil_server::convert::timestamp;
use vexil_server::live::LiveSettings;
use vexil_server::storage::now_millis;

use vexil_testing::{
    Cluster, ENV, PROJECT, ServerOptions, authed, create_bool_flag, eventually, flag_resource,
};

const FLAGS: usize = 40;

type Admin = pb::admin_service_client::AdminServiceClient<tonic::transport::Channel>;

async fn list(mut admin: Admin, token: String) -> Vec<pb::ScheduledChange> {
    admin
        .list_scheduled_changes(authed(
            pb::ListScheduledChangesRequest {
                project_key: PROJECT.into(),
                environment_key: ENV.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_changes_run_once_across_three_instances_and_a_crash() {
    let options = ServerOptions {
        schedule_interval: Some(Duration::from_millis(20)),
        ..ServerOptions::default()
    };
    let Some(mut cluster) = Cluster::postgres_with(3, LiveSettings::default(), options).await
    else {
        return;
    };
    let token = cluster.root_token();
    let mut admin = cluster.instances[0].admin().await;
    let run_at = now_millis() + 3_000;
    for i in 0..FLAGS {
        let key = format!("launch-{i}");
        create_bool_flag(&mut admin, &token, &key, false).await;
        admin
            .schedule_change(authed(
                pb::ScheduleChangeRequest {
                    project_key: PROJECT.into(),
                    environment_key: ENV.into(),
                    key,
                    run_at: Some(timestamp(run_at)),
                    edit: Some(pb::schedule_change_request::Edit::On(true)),
                    comment: String::new(),
                },
                &token,
            ))
            .await
            .unwrap();
    }

    // Crash the second instance as the changes fall due, while all three race for them.
    let wait = u64::try_from(run_at + 5 - now_millis()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    cluster.instances[1].crash().await;

    eventually(Duration::from_secs(20), "every change is applied", || {
        let (admin, token) = (admin.clone(), token.clone());
        async move {
            list(admin, token)
                .await
                .iter()
                .all(|x| x.state == pb::ScheduledChangeState::Applied as i32)
        }
    })
    .await;

    // The crashed instance comes back and finds nothing left to do.
    cluster.instances[1].restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut admin = admin;
    for x in list(admin.clone(), token.clone()).await {
        assert_eq!(x.applied_version, 2, "{x:?}");
        let versions = admin
            .list_versions(authed(
                pb::ListVersionsRequest {
                    resource: Some(flag_resource(&x.flag_key)),
                    page: None,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .versions;
        let applied = versions
            .iter()
            .filter(|v| v.action == "scheduled_change.apply")
            .count();
        assert_eq!(applied, 1, "flag {} was changed once", x.flag_key);
        assert_eq!(versions.len(), 2, "{versions:?}");
    }
    cluster.stop().await;
}
