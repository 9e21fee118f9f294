//! Child processes: the stores the tests start, and `vexil-server` binaries the examples run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tonic::transport::{Channel, Endpoint};

/// A child process, killed at once (as in a crash) and reaped when stopped or dropped; empty
/// when it is not running.
#[derive(Debug, Default)]
pub struct ChildProcess(Option<Child>);

impl ChildProcess {
    pub fn new(child: Child) -> ChildProcess {
        ChildProcess(Some(child))
    }

    /// Whether a process was started and not killed since (it may have exited by itself).
    pub fn is_running(&self) -> bool {
        self.0.is_some()
    }

    /// Its process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// How it exited, if it did.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        match &mut self.0 {
            Some(child) => child.try_wait(),
            None => Ok(None),
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a `vexil-server` binary may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A `vexil-server` binary run on free loopback ports, for the examples that measure or break
/// a deployment of several instances: its standard error goes to a log file, and it is killed
/// when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
    child: ChildProcess,
}

impl ServerProcess {
    /// A server of `binary` (not started yet) with its data folder `<dir>/<name>` and its log
    /// `<dir>/<name>.log`, which takes `args` after its addresses and data folder.
    pub fn new(
        binary: &Path,
        dir: &Path,
        name: &str,
        args: Vec<String>,
    ) -> anyhow::Result<ServerProcess> {
        Ok(ServerProcess {
            grpc: free_address()?,
            http: free_address()?,
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
            binary: binary.to_owned(),
            args,
            child: ChildProcess::default(),
        })
    }

    /// Starts the server (again: its log is appended to), and waits until `/readyz` answers
    /// 200; an error with the log's tail if it exits first.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .arg("--listen")
            .arg(self.grpc.to_string())
            .arg("--http-listen")
            .arg(self.http.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.binary.display()))?;
        self.child = ChildProcess::new(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                bail!(
                    "vexil-server on {} exited with {status}:\n{tail}",
                    self.grpc
                );
            }
            if http_status(self.http, "/readyz").await == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "vexil-server on {} not ready within {} s",
                    self.grpc,
                    READY_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// `http://<gRPC address>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(self.endpoint())?.connect().await?)
    }

    /// The process's resident memory, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }
}

/// A free loopback address (free when asked: another process may take it before it is used).
pub fn free_address() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The status code of a GET on an HTTP port, if it answered within 2 s (a refused connection,
/// while the server starts, is `None`).
async fn http_status(address: SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let head = String::from_utf8_lossy(&response);
        head.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}
