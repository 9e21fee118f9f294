//! A `redis-server` of a test's own.

use std::process::Child;
use std::time::Duration;

use crate::ChildProcess;

/// A `redis-server` on a free loopback port, which the test can stop (as in a crash) and
/// restart on the same port; killed when dropped. The binary is `redis-server` from the
/// `PATH`, or `VEXIL_TEST_REDIS_SERVER`.
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    child: ChildProcess,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut redis = PrivateRedis {
            port,
            child: ChildProcess::default(),
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn restart(&mut self) {
        let child = spawn_redis_server(self.port, self.dir.path(), &[]);
        self.child = ChildProcess::new(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server: connections drop at once, as in a crash.
    pub fn stop(&mut self) {
        self.child.kill();
    }
}

/// Starts `redis-server` (from the `PATH`, or `VEXIL_TEST_REDIS_SERVER`) on a loopback
/// `port` with its files in `dir`, without persistence, with `extra` options.
pub(crate) fn spawn_redis_server(port: u16, dir: &std::path::Path, extra: &[&str]) -> Child {
    let binary = std::env::var("VEXIL_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    std::process::Command::new(&binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {binary} ({err}); scripts/services.sh installs Redis, or set \
                 VEXIL_TEST_REDIS_SERVER to its path"
            )
        })
}
