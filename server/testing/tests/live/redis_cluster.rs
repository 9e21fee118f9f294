//! Instances on a Redis Cluster: notices over sharded pub/sub, L2 snapshots in any slot,
//! and a primary killed while changes propagate.

use std::time::{Duration, Instant};

use tonic::transport::Channel;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_testing::{
    Cluster, ENV, PROJECT, PrivateRedisCluster, TestServer, create_bool_flag, eventually, toggle,
    unique,
};

use super::{RefreshNow, WAIT, next_sync, open_sync, through_redis};

const BY_NOTICE: &str = "vexil_propagation_lag_seconds_count{source=\"notice\"}";
const BY_CHECK: &str = "vexil_propagation_lag_seconds_count{source=\"check\"}";

/// Toggles `checkout` through `admin`, then reads `sync` until it holds the change; returns
/// how long that took.
async fn propagate(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    on: bool,
    writer: &TestServer,
    sync: &mut tonic::Streaming<pb::SyncResponse>,
) -> Duration {
    let started = Instant::now();
    toggle(admin, token, "checkout", on).await;
    let written = writer
        .storage
        .environment_version(PROJECT, ENV)
        .await
        .expect("environment version");
    loop {
        let pb::sync_response::Event::Patch(patch) = next_sync(sync).await else {
            panic!("a patch");
        };
        if patch.version >= written {
            return started.elapsed();
        }
    }
}

async fn subscribed(instances: &[TestServer]) {
    for instance in instances {
        eventually(
            Duration::from_secs(20),
            "subscribed to the cluster",
            || async { instance.metric("vexil_redis_connected").await == 1.0 },
        )
        .await;
    }
}

#[tokio::test]
async fn three_instances_propagate_through_a_redis_cluster_and_survive_a_primary_failover() {
    let mut redis = tokio::task::spawn_blocking(PrivateRedisCluster::start)
        .await
        .expect("start the redis cluster");
    let prefix = unique("vexil_cluster");
    let live = through_redis(redis.url(), &prefix);
    let Some(mut cluster) = Cluster::postgres(3, live).await else {
        return;
    };
    let token = cluster.root_token();
    let server_key = cluster.sdk_key(ENV, "server");
    let mut admin = cluster.instances[0].admin().await;
    create_bool_flag(&mut admin, &token, "checkout", false).await;
    for instance in &cluster.instances {
        instance.refresh_now().await;
    }
    subscribed(&cluster.instances).await;
    let (a, c) = (&cluster.instances[0], &cluster.instances[2]);
    let mut sync_c = open_sync(c, &server_key, 0).await;
    let pb::sync_response::Event::Snapshot(_) = next_sync(&mut sync_c).await else {
        panic!("a snapshot first");
    };

    // 1. A change reaches another instance by a sharded notice.
    let took = propagate(&mut admin, &token, true, a, &mut sync_c).await;
    eprintln!("propagation through the cluster: {took:?}");
    assert!(c.metric(BY_NOTICE).await >= 1.0, "C learnt of it by notice");
    assert_eq!(c.metric(BY_CHECK).await, 0.0);

    // 2. A new instance warms up from the L2 snapshot, wherever its slot is.
    let d = cluster.add_instance().await;
    let d = &cluster.instances[d];
    eventually(WAIT, "the new instance is ready", || async {
        d.http_get("/readyz", &[]).await.status == 200
    })
    .await;
    assert!(
        d.metric("vexil_cache_requests_total{layer=\"l2\",result=\"hit\"}")
            .await
            >= 1.0,
        "the new instance loaded the environment from the cluster"
    );

    // 3. The primary serving the notices' channel is killed while changes keep coming:
    //    every change arrives, through the failover.
    let channel = format!("{prefix}:changes");
    let killed = redis.primary_of(&channel);
    redis.kill(killed);
    let a = &cluster.instances[0];
    let c = &cluster.instances[2];
    let mut slowest = Duration::ZERO;
    let mut on = false;
    let failover = Instant::now();
    while failover.elapsed() < Duration::from_secs(8) {
        let took = propagate(&mut admin, &token, on, a, &mut sync_c).await;
        slowest = slowest.max(took);
        on = !on;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("slowest propagation during the failover: {slowest:?}");
    let redis = tokio::task::spawn_blocking(move || {
        redis.wait_settled();
        redis
    })
    .await
    .expect("the cluster settles");
    assert_ne!(
        redis.primary_of(&channel),
        killed,
        "a replica took the channel's slot over"
    );

    // 4. After the failover, notices are fast again: the subscription moved.
    subscribed(&cluster.instances).await;
    let checks = c.metric(BY_CHECK).await;
    let notices = c.metric(BY_NOTICE).await;
    let took = propagate(&mut admin, &token, on, a, &mut sync_c).await;
    eprintln!("propagation after the failover: {took:?}");
    assert_eq!(c.metric(BY_NOTICE).await, notices + 1.0, "by notice again");
    assert_eq!(c.metric(BY_CHECK).await, checks);

    drop((sync_c, admin));
    cluster.stop().await;
    drop(redis);
}
