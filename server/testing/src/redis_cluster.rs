//! A Redis Cluster of a test's own.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ChildProcess;
use crate::redis::spawn_redis_server;

/// How long a cluster may take to form, or to elect a new primary after a kill.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster of three primaries, each with one replica, on free loopback ports: six
/// `redis-server` processes (from the `PATH`, or `VEXIL_TEST_REDIS_SERVER`) joined with
/// `redis-cli --cluster create`. A node times out after one second, so a replica takes over
/// a killed primary within a few. The test can kill a node (as in a crash) and start it
/// again; every node is killed when dropped.
#[derive(Debug)]
pub struct PrivateRedisCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Node {
    port: u16,
    bus_port: u16,
    child: ChildProcess,
}

/// A node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub port: u16,
    pub primary: bool,
    /// Whether the others consider it failed.
    pub failed: bool,
    /// The slot ranges it serves (primaries), inclusive.
    pub slots: Vec<(u16, u16)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

impl PrivateRedisCluster {
    /// Starts the six nodes, creates the cluster and waits until every node reports it ok.
    pub fn start() -> PrivateRedisCluster {
        let mut cluster = PrivateRedisCluster {
            nodes: (0..6)
                .map(|_| Node {
                    port: free_port(),
                    bus_port: free_port(),
                    child: ChildProcess::default(),
                })
                .collect(),
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        for index in 0..cluster.nodes.len() {
            cluster.start_node(index);
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-cli ({err}); scripts/services.sh installs it")
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_settled();
        cluster
    }

    /// The seed URLs of every node, separated by commas: what `--redis-url` takes.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let dir = self.dir.path().join(node.port.to_string());
        std::fs::create_dir_all(&dir).expect("node folder");
        let bus_port = node.bus_port.to_string();
        let child = spawn_redis_server(
            node.port,
            &dir,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus_port,
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                // A replica syncs at once (not after the default 5 s wait for other
                // replicas), and may take over whatever the age of its data: the test is
                // about failover.
                "--repl-diskless-sync-delay",
                "0",
                "--cluster-replica-validity-factor",
                "0",
            ],
        );
        node.child = ChildProcess::new(child);
        let port = node.port;
        let started = Instant::now();
        while redis_cli(port, &["ping"]).as_deref().map(str::trim) != Some("PONG") {
            assert!(
                started.elapsed() < SETTLE_TIMEOUT,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes as the node on `port` sees them.
    fn nodes_seen_from(&self, port: u16) -> Option<Vec<ClusterNode>> {
        let text = redis_cli(port, &["cluster", "nodes"])?;
        let nodes = text
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let address = fields.get(1)?;
                let port = address.split(['@', ':']).nth(1)?.parse().ok()?;
                let flags = fields.get(2)?;
                let slots = fields
                    .iter()
                    .skip(8)
                    .filter(|f| !f.starts_with('['))
                    .filter_map(|range| match range.split_once('-') {
                        Some((from, to)) => Some((from.parse().ok()?, to.parse().ok()?)),
                        None => range.parse().ok().map(|slot| (slot, slot)),
                    })
                    .collect();
                Some(ClusterNode {
                    port,
                    primary: flags.contains("master"),
                    failed: flags.contains("fail") && !flags.contains("fail?"),
                    slots,
                })
            })
            .collect();
        Some(nodes)
    }

    /// The nodes, as a running node sees them.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        self.running_ports()
            .find_map(|port| self.nodes_seen_from(port))
            .expect("a running node answers")
    }

    /// The ports of the running nodes.
    pub fn ports(&self) -> Vec<u16> {
        self.running_ports().collect()
    }

    fn running_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.child.is_running())
            .map(|n| n.port)
    }

    /// The port of the primary serving `key` now.
    pub fn primary_of(&self, key: &str) -> u16 {
        let port = self.running_ports().next().expect("a running node");
        let slot: u16 = redis_cli(port, &["cluster", "keyslot", key])
            .and_then(|text| text.trim().parse().ok())
            .expect("the key's slot");
        self.nodes()
            .into_iter()
            .find(|n| {
                n.primary && !n.failed && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
            })
            .map(|n| n.port)
            .expect("a primary serves the slot")
    }

    /// Kills the node on `port` at once, as in a crash.
    pub fn kill(&mut self, port: u16) {
        let index = self.node_index(port);
        self.nodes[index].child.kill();
    }

    /// Starts the node on `port` again (it rejoins from its cluster configuration file, as
    /// a replica when another node took its slots over).
    pub fn restart(&mut self, port: u16) {
        self.start_node(self.node_index(port));
    }

    fn node_index(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of the cluster")
    }

    /// Waits until every running node reports the cluster ok, with every slot served by a
    /// running primary (after a kill: until a replica took the killed primary's slots), and
    /// every running replica in sync with its primary.
    pub fn wait_settled(&self) {
        let started = Instant::now();
        let running: Vec<u16> = self.running_ports().collect();
        loop {
            let ok = running.iter().all(|&port| {
                redis_cli(port, &["cluster", "info"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
                    && redis_cli(port, &["info", "replication"]).is_some_and(|info| {
                        info.contains("role:master") || info.contains("master_link_status:up")
                    })
                    && self.nodes_seen_from(port).is_some_and(|nodes| {
                        let serving: Vec<&ClusterNode> = nodes
                            .iter()
                            .filter(|n| n.primary && !n.slots.is_empty())
                            .collect();
                        serving
                            .iter()
                            .all(|n| !n.failed && running.contains(&n.port))
                            && serving
                                .iter()
                                .flat_map(|n| n.slots.iter())
                                .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
                                .sum::<u32>()
                                == 16384
                    })
            });
            if ok {
                return;
            }
            assert!(
                started.elapsed() < SETTLE_TIMEOUT,
                "the redis cluster did not settle"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
