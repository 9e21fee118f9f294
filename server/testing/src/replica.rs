//! A Postgres primary with a streaming replica, of a test's own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// A Postgres primary and a hot-standby replica fed by streaming replication
/// (`pg_basebackup -R`), on free loopback ports in a folder of their own, run as the
/// `postgres` OS user with Debian's binaries (`/usr/lib/postgresql/<newest>/bin`, or
/// `VEXIL_TEST_PG_BIN`). The test can pause the replica's replay (a replica that lags), stop
/// it and start it again (one that disappears). Both are stopped and removed when dropped.
#[derive(Debug)]
pub struct ReplicatedPostgres {
    bin: PathBuf,
    dir: PathBuf,
    pub primary_port: u16,
    pub replica_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn pg_bin() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("VEXIL_TEST_PG_BIN") {
        return Some(PathBuf::from(bin));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

impl ReplicatedPostgres {
    /// Creates and starts both, and a database `vexil` on the primary (replicated like the
    /// rest). `None` when `VEXIL_TEST_SKIP_POSTGRES=1` asks to skip Postgres; a panic when
    /// the binaries are missing otherwise (scripts/services.sh installs them).
    pub fn start() -> Option<ReplicatedPostgres> {
        if std::env::var("VEXIL_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
            return None;
        }
        let bin = pg_bin().expect(
            "no Postgres server binaries under /usr/lib/postgresql (scripts/services.sh \
             installs them; VEXIL_TEST_PG_BIN names another folder)",
        );
        let dir = std::env::temp_dir().join(crate::unique("vexil-replicated-pg"));
        let pg = ReplicatedPostgres {
            bin,
            dir,
            primary_port: free_port(),
            replica_port: free_port(),
        };
        run(Command::new("install")
            .args(["-d", "-o", "postgres", "-g", "postgres", "-m", "700"])
            .arg(&pg.dir));
        pg.as_postgres("initdb", |c| {
            c.arg("-D").arg(pg.primary_dir()).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]);
        });
        pg.start_server(&pg.primary_dir(), pg.primary_port);
        pg.as_postgres("pg_basebackup", |c| {
            c.args(["-h", "127.0.0.1", "-p", &pg.primary_port.to_string()])
                .args(["-U", "postgres", "-R", "-X", "stream", "-D"])
                .arg(pg.replica_dir());
        });
        pg.start_replica();
        pg.as_postgres("createdb", |c| {
            c.args(["-h", "127.0.0.1", "-p", &pg.primary_port.to_string()])
                .args(["-U", "postgres", "vexil"]);
        });
        Some(pg)
    }

    fn primary_dir(&self) -> PathBuf {
        self.dir.join("primary")
    }

    fn replica_dir(&self) -> PathBuf {
        self.dir.join("replica")
    }

    fn as_postgres(&self, program: &str, args: impl FnOnce(&mut Command)) {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program));
        args(&mut command);
        run(&mut command);
    }

    fn start_server(&self, data: &Path, port: u16) {
        let options = self.server_options(port);
        self.as_postgres("pg_ctl", |c| {
            c.args(["start", "-w", "-t", "60", "-D"])
                .arg(data)
                .arg("-l")
                .arg(data.with_extension("log"))
                .args(["-o", &options]);
        });
    }

    fn stop_server(&self, data: &Path) {
        self.as_postgres("pg_ctl", |c| {
            c.args(["stop", "-w", "-m", "immediate", "-D"]).arg(data);
        });
    }

    /// `postgres://postgres@127.0.0.1:<primary>/vexil`.
    pub fn primary_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/vexil", self.primary_port)
    }

    /// `postgres://postgres@127.0.0.1:<replica>/vexil`.
    pub fn replica_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/vexil", self.replica_port)
    }

    /// Stops the replica at once, as in a crash: its connections drop.
    pub fn stop_replica(&self) {
        self.stop_server(&self.replica_dir());
    }

    /// Starts the replica (again) and waits until it accepts connections; it catches up
    /// from the primary.
    pub fn start_replica(&self) {
        self.start_server(&self.replica_dir(), self.replica_port);
    }

    /// Starts the replica (again) without waiting: after a crash under heavy writes its
    /// recovery can take minutes, which a load generator should not spend waiting.
    pub fn start_replica_in_background(&self) {
        let options = self.server_options(self.replica_port);
        self.as_postgres("pg_ctl", |c| {
            c.args(["start", "-W", "-D"])
                .arg(self.replica_dir())
                .arg("-l")
                .arg(self.replica_dir().with_extension("log"))
                .args(["-o", &options]);
        });
    }

    fn server_options(&self, port: u16) -> String {
        format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off -c max_connections=100",
            self.dir.display()
        )
    }

    async fn replica_sql(&self, sql: &str) {
        let mut connection = PgConnection::connect(&self.replica_url())
            .await
            .expect("replica connection");
        sqlx::query(sql)
            .execute(&mut connection)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }

    /// Pauses the replica's replay: it keeps receiving WAL but shows nothing newer, as a
    /// replica that lags.
    pub async fn pause_replay(&self) {
        self.replica_sql("SELECT pg_wal_replay_pause()").await;
    }

    /// Resumes the replica's replay.
    pub async fn resume_replay(&self) {
        self.replica_sql("SELECT pg_wal_replay_resume()").await;
    }

    /// Waits until the replica has replayed everything the primary wrote so far.
    pub async fn wait_caught_up(&self) {
        let mut primary = PgConnection::connect(&self.primary_url())
            .await
            .expect("primary connection");
        let (target,): (String,) = sqlx::query_as("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&mut primary)
            .await
            .expect("primary position");
        let mut replica = PgConnection::connect(&self.replica_url())
            .await
            .expect("replica connection");
        for _ in 0..600 {
            let (behind,): (bool,) =
                sqlx::query_as("SELECT pg_last_wal_replay_lsn() < $1::text::pg_lsn")
                    .bind(&target)
                    .fetch_one(&mut replica)
                    .await
                    .expect("replica position");
            if !behind {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the replica did not catch up with {target}");
    }
}

impl Drop for ReplicatedPostgres {
    fn drop(&mut self) {
        for data in [self.replica_dir(), self.primary_dir()] {
            if data.join("postmaster.pid").exists() {
                let _ = Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(self.bin.join("pg_ctl"))
                    .args(["stop", "-w", "-m", "immediate", "-D"])
                    .arg(&data)
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
