//! The system under load: a Postgres primary and replica, a Redis Cluster, three
//! `vexil-server` processes; and the faults injected into it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use vexil_testing::{PrivateRedisCluster, ReplicatedPostgres, ServerProcess, http_get};

use crate::Options;
use crate::measure::{LoadCounters, Report};

/// Shared by the instances, so that a token any of them issued is accepted by all.
const JWT_SECRET: &str = "seeds-load-signing-secret-0123456789";
const INSTANCES: usize = 3;
const REDIS_PREFIX: &str = "vexil-seeds";
/// How long the replica stays down in its fault.
const REPLICA_DOWN: Duration = Duration::from_secs(20);

pub struct Services {
    postgres: ReplicatedPostgres,
    redis: std::sync::Mutex<PrivateRedisCluster>,
    pub instances: Vec<ServerProcess>,
    _folder: tempfile::TempDir,
}

fn server_binary(options: &Options) -> anyhow::Result<PathBuf> {
    if let Some(bin) = &options.server_bin {
        return Ok(bin.clone());
    }
    // target/<profile>/examples/seeds → target/<profile>/vexil-server
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("vexil-server"))
        .context("the example's folder")?;
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build it (cargo build --release -p vexil-server) or pass --server-bin",
        bin.display()
    );
    Ok(bin)
}

impl Services {
    pub async fn start(options: &Options) -> anyhow::Result<Services> {
        let binary = server_binary(options)?;
        let (postgres, redis) = tokio::task::spawn_blocking(|| {
            (ReplicatedPostgres::start(), PrivateRedisCluster::start())
        })
        .await?;
        let postgres = postgres.context("Postgres is needed (VEXIL_TEST_SKIP_POSTGRES is set)")?;
        eprintln!(
            "postgres primary :{} replica :{}; redis cluster {}",
            postgres.primary_port,
            postgres.replica_port,
            redis.url()
        );
        let folder = tempfile::tempdir()?;
        let mut instances = Vec::new();
        for index in 0..INSTANCES {
            let mut args = vec![
                "--database-url".into(),
                postgres.primary_url(),
                "--database-replica-url".into(),
                postgres.replica_url(),
                "--redis-url".into(),
                redis.url(),
                "--redis-prefix".into(),
                REDIS_PREFIX.into(),
                "--jwt-secret".into(),
                JWT_SECRET.into(),
            ];
            args.extend(options.server_options.iter().cloned());
            let mut instance =
                ServerProcess::new(&binary, folder.path(), &format!("instance-{index}"), args)?;
            // The first start writes the credentials; the others join it.
            instance.start().await?;
            instances.push(instance);
        }
        Ok(Services {
            postgres,
            redis: std::sync::Mutex::new(redis),
            instances,
            _folder: folder,
        })
    }

    fn credentials(&self) -> anyhow::Result<serde_json::Value> {
        let path = self.instances[0].data_dir.join("credentials.json");
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        Ok(serde_json::from_str(&text)?)
    }

    pub fn root_token(&self) -> anyhow::Result<String> {
        self.credentials()?
            .pointer("/admin_token/token")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .context("admin token in the credentials")
    }

    pub fn sdk_key(&self, kind: &str) -> anyhow::Result<String> {
        self.credentials()?
            .pointer(&format!("/sdk_keys/{}/{kind}", crate::ENV))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .context("SDK key in the credentials")
    }

    /// What the stores did so far: the Postgres primary's counters (the replica's restart
    /// with it when the fault stops it: its share is counted by the instances), Redis's on
    /// every node.
    pub async fn load_counters(&self) -> LoadCounters {
        let mut counters = LoadCounters::default();
        {
            let side = &mut counters.primary;
            if let Ok(mut db) = PgConnection::connect(&self.postgres.primary_url()).await {
                let row: Result<(i64, i64, i64, i64), _> = sqlx::query_as(
                    "SELECT xact_commit, tup_returned + tup_fetched, \
                     tup_inserted + tup_updated + tup_deleted, blks_read \
                     FROM pg_stat_database WHERE datname = current_database()",
                )
                .fetch_one(&mut db)
                .await;
                if let Ok(row) = row {
                    *side = [row.0, row.1, row.2, row.3];
                }
                db.close().await.ok();
            }
        }
        let ports = self.redis.lock().map(|r| r.ports()).unwrap_or_default();
        for port in ports {
            let info = redis_info(port);
            counters.redis_commands.insert(
                port,
                info.get("total_commands_processed").copied().unwrap_or(0),
            );
            counters.redis_memory += info.get("used_memory").copied().unwrap_or(0);
        }
        counters
    }

    /// Every instance's `/metrics` lines of interest, summed over the instances.
    pub async fn server_metrics(&self) -> BTreeMap<String, f64> {
        const KEPT: [&str; 6] = [
            "vexil_replica_reads_total",
            "vexil_events_total",
            "vexil_propagation_lag_seconds_count",
            "vexil_redis_errors_total",
            "vexil_database_errors_total",
            "vexil_shed_requests_total",
        ];
        let mut sums = BTreeMap::new();
        for instance in &self.instances {
            let response = http_get(instance.http, "/metrics", &[]).await;
            for line in String::from_utf8_lossy(&response.body).lines() {
                let Some((name, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                if KEPT.iter().any(|k| name.starts_with(k))
                    && let Ok(value) = value.parse::<f64>()
                {
                    *sums.entry(name.to_owned()).or_insert(0.0) += value;
                }
            }
        }
        sums
    }

    /// The faults of a run of `run` length: the Redis primary owning the notices' channel
    /// is killed at 40 % of it, the Postgres replica is stopped at 60 % and started again
    /// [`REPLICA_DOWN`] later.
    pub fn faults(&self, run: Duration) -> Faults<'_> {
        Faults {
            services: self,
            kill_redis_at: run.mul_f64(0.4),
            stop_replica_at: run.mul_f64(0.6),
            done: 0,
            replica_stopped: None,
            killed_redis: None,
        }
    }

    pub async fn stop(self) {
        for mut instance in self.instances {
            instance.kill();
        }
    }
}

/// `INFO` of a Redis node, its numeric fields.
fn redis_info(port: u16) -> BTreeMap<String, i64> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "info"])
        .output();
    let text = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

pub struct Faults<'a> {
    services: &'a Services,
    kill_redis_at: Duration,
    stop_replica_at: Duration,
    done: usize,
    replica_stopped: Option<Instant>,
    killed_redis: Option<u16>,
}

impl Faults<'_> {
    /// Injects or heals what is due at `elapsed` into the run.
    pub async fn step(&mut self, elapsed: Duration, report: &mut Report) {
        if self.done == 0 && elapsed >= self.kill_redis_at {
            self.done = 1;
            let channel = format!("{REDIS_PREFIX}:changes");
            if let Ok(mut redis) = self.services.redis.lock() {
                let port = redis.primary_of(&channel);
                redis.kill(port);
                self.killed_redis = Some(port);
            }
            report.faults.push(format!(
                "{elapsed:.0?}: killed the Redis primary of the notices' channel"
            ));
        }
        if self.done == 1 && elapsed >= self.stop_replica_at {
            self.done = 2;
            self.services.postgres.stop_replica();
            self.replica_stopped = Some(Instant::now());
            report
                .faults
                .push(format!("{elapsed:.0?}: stopped the Postgres replica"));
        }
        if self
            .replica_stopped
            .is_some_and(|at| at.elapsed() >= REPLICA_DOWN)
        {
            self.replica_stopped = None;
            self.services.postgres.start_replica_in_background();
            report
                .faults
                .push(format!("{elapsed:.0?}: started the Postgres replica again"));
        }
    }

    /// Undoes what is still injected at the end of the run.
    pub async fn heal(&mut self, report: &mut Report) {
        if self.replica_stopped.take().is_some() {
            self.services.postgres.start_replica_in_background();
            report
                .faults
                .push("end: started the Postgres replica again".into());
        }
        if let Some(port) = self.killed_redis.take()
            && let Ok(mut redis) = self.services.redis.lock()
        {
            redis.restart(port);
            report
                .faults
                .push("end: the killed Redis node rejoined (as a replica)".into());
        }
    }
}
