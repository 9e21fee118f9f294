//! A Postgres read replica: the reads that tolerate lag go to it, and a replica that lags
//! or disappears is read around, never served from stale.

use std::time::{Duration, Instant};

use tonic::transport::Channel;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_proto::v1::experiment_service_client::ExperimentServiceClient;
use vexil_server::live::LiveSettings;
use vexil_testing::{
    Cluster, ENV, PROJECT, PrivateRedis, ReplicatedPostgres, ServerOptions, TestDatabase,
    TestServer, authed, create_bool_flag, create_environment, eventually, toggle, unique,
};

use super::{next_sync, open_sync};

/// Reads of `instance` that could go to its replica, with this outcome.
async fn replica_reads(instance: &TestServer, outcome: &str) -> f64 {
    instance
        .metric(&format!(
            "vexil_replica_reads_total{{outcome=\"{outcome}\"}}"
        ))
        .await
}

/// Toggles `checkout` through `admin` and returns the patch `sync` receives for it, with
/// how long it took.
async fn toggle_and_receive(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    on: bool,
    sync: &mut tonic::Streaming<pb::SyncResponse>,
) -> (pb::Patch, Duration) {
    let started = Instant::now();
    toggle(admin, token, "checkout", on).await;
    let pb::sync_response::Event::Patch(patch) = next_sync(sync).await else {
        panic!("a patch");
    };
    assert_eq!(patch.upserted_flags.len(), 1);
    assert_eq!(
        patch.upserted_flags[0].on, on,
        "the patch carries the change"
    );
    (patch, started.elapsed())
}

/// A new instance's first Sync: a snapshot of the primary's current version, whatever its
/// replica holds.
async fn first_snapshot(instance: &TestServer, key: &str) -> pb::Snapshot {
    let mut sync = open_sync(instance, key, 0).await;
    let pb::sync_response::Event::Snapshot(snapshot) = next_sync(&mut sync).await else {
        panic!("a snapshot first");
    };
    snapshot
}

fn checkout_on(snapshot: &pb::Snapshot) -> bool {
    snapshot
        .flags
        .iter()
        .find(|f| f.key == "checkout")
        .expect("checkout in the snapshot")
        .on
}

#[tokio::test]
async fn a_read_replica_serves_lagging_reads_and_is_read_around_when_it_lags_or_disappears() {
    let Some(pg) = tokio::task::spawn_blocking(ReplicatedPostgres::start)
        .await
        .expect("start postgres")
    else {
        return;
    };
    let redis = PrivateRedis::start();
    let live = LiveSettings {
        redis_url: Some(redis.url()),
        redis_prefix: unique("vexil_replica"),
        // Changes arrive by notice, which names the version to reach: the refreshes the
        // replica may answer.
        version_check_interval: Duration::from_secs(30),
        heartbeat_interval: Duration::from_millis(500),
        ..LiveSettings::default()
    };
    let options = ServerOptions {
        database_replica_url: Some(pg.replica_url()),
        ..ServerOptions::default()
    };
    let database = TestDatabase::postgres_at(&pg.primary_url());
    let mut cluster = Cluster::start(database, 2, live, options).await;
    let token = cluster.root_token();
    let server_key = cluster.sdk_key(ENV, "server");
    let mut admin = cluster.instances[0].admin().await;
    create_bool_flag(&mut admin, &token, "checkout", false).await;

    // 1. A replica in step answers the first load of an environment. The environment is
    // created after the flag, so that no instance holds it yet (or has put it in L2): the
    // load can only come from the store.
    let staging_key = create_environment(&mut admin, &token, "staging").await;
    pg.wait_caught_up().await;
    let b = &cluster.instances[1];
    let replica_before = replica_reads(b, "replica").await;
    let staging = first_snapshot(b, &staging_key).await;
    assert!(!checkout_on(&staging));
    assert!(
        replica_reads(b, "replica").await > replica_before,
        "the replica answered B's load"
    );
    let mut sync_b = open_sync(b, &server_key, 0).await;
    let pb::sync_response::Event::Snapshot(snapshot) = next_sync(&mut sync_b).await else {
        panic!("a snapshot first");
    };
    assert!(!checkout_on(&snapshot));
    let (patch, took) = toggle_and_receive(&mut admin, &token, true, &mut sync_b).await;
    eprintln!("propagation with the replica in step: {took:?}");
    let version_on = patch.version;

    // 2. A replica that lags: refreshes, new instances and resuming streams get the
    // primary's version, and the lag is counted.
    pg.pause_replay().await;
    let behind = replica_reads(b, "behind").await;
    let (patch, took) = toggle_and_receive(&mut admin, &token, false, &mut sync_b).await;
    eprintln!("propagation with the replica paused: {took:?}");
    let version_off = patch.version;
    assert!(
        replica_reads(b, "behind").await > behind,
        "B found the replica behind the notice's version"
    );
    let c = cluster.add_instance().await;
    let c = &cluster.instances[c];
    let snapshot = first_snapshot(c, &server_key).await;
    assert_eq!(
        snapshot.version, version_off,
        "a load from the lagging replica is caught up from the primary"
    );
    assert!(!checkout_on(&snapshot));
    let mut resumed = open_sync(c, &server_key, version_on).await;
    let pb::sync_response::Event::Patch(patch) = next_sync(&mut resumed).await else {
        panic!("resuming gets a patch");
    };
    assert_eq!(
        (patch.from_version, patch.version),
        (version_on, version_off)
    );
    assert!(
        replica_reads(c, "behind").await >= 1.0,
        "C found the replica behind the version it holds"
    );
    drop(resumed);
    // Writes check against the primary: one through the instance that loaded from the
    // lagging replica succeeds at once and reaches the others.
    let mut admin_c = c.admin().await;
    let (_, took) = toggle_and_receive(&mut admin_c, &token, true, &mut sync_b).await;
    eprintln!("a write through C, replica paused: {took:?}");
    pg.resume_replay().await;

    // 3. A replica that disappears: reads go to the primary, only the first of them tries
    // the replica, and new instances start.
    pg.stop_replica();
    let b = &cluster.instances[1];
    let (_, took) = toggle_and_receive(&mut admin, &token, false, &mut sync_b).await;
    eprintln!("propagation as the replica goes down: {took:?}");
    assert!(replica_reads(b, "unavailable").await >= 1.0);
    let (_, took) = toggle_and_receive(&mut admin, &token, true, &mut sync_b).await;
    eprintln!("propagation with the replica down: {took:?}");
    assert!(
        replica_reads(b, "down").await >= 1.0,
        "B reads around the replica marked down, without trying it"
    );
    let d = cluster.add_instance().await;
    let (b, d) = (&cluster.instances[1], &cluster.instances[d]);
    let snapshot = first_snapshot(d, &server_key).await;
    assert!(
        checkout_on(&snapshot),
        "a new instance starts on the primary"
    );

    // 4. The replica back: once a probe finds it, the lagging reads go to it again.
    pg.start_replica();
    pg.wait_caught_up().await;
    let answered = replica_reads(b, "replica").await;
    let experiments = ExperimentServiceClient::new(b.channel().await);
    let usage = pb::GetFlagUsageRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        ..Default::default()
    };
    eventually(
        Duration::from_secs(20),
        "reads on the replica again",
        || {
            let mut experiments = experiments.clone();
            let request = authed(usage.clone(), &token);
            async move {
                experiments
                    .get_flag_usage(request)
                    .await
                    .expect("flag usage");
                replica_reads(b, "replica").await > answered
            }
        },
    )
    .await;

    drop((sync_b, admin, admin_c, experiments));
    cluster.stop().await;
    drop(pg);
    drop(redis);
}
