//! Starts a throw-away nats-server for the benchmark, or a 3-node
//! cluster of them on loopback ([`Cluster`], for `--cluster`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

fn binary() -> std::path::PathBuf {
    if let Some(b) = std::env::var_os("NATS_SERVER_BIN").filter(|v| !v.is_empty()) {
        return b.into();
    }
    let local =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-nats/bin/nats-server");
    if local.exists() {
        return local;
    }
    "nats-server".into()
}

/// A free port on loopback (free when asked; the server binds it soon after).
fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports on loopback (each held until all are chosen).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Server {
    pub fn start(_memory: bool) -> Server {
        Server::launch(free_port(), &[], true)
    }

    /// A server on `port` with JetStream in a store of its own and
    /// `extra` arguments, once it accepts connections.
    fn launch(port: u16, extra: &[String], announce: bool) -> Server {
        let store = tempfile::tempdir().unwrap();
        let bin = binary();
        let mut child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {}: {e} (set NATS_SERVER_BIN or use --server)",
                    bin.display()
                )
            });
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server on port {port} exited: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if announce {
            let version = Command::new(&bin)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            eprintln!("started {version} ({}) on port {port}", bin.display());
        }
        Server {
            child,
            port,
            _store: store,
        }
    }

    /// The server's process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three nats-servers routed to each other in one cluster, each with
/// JetStream in a store of its own.
pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    /// Starts the nodes and returns once JetStream has a meta leader and
    /// takes a stream of 3 replicas (every node has joined).
    pub async fn start() -> Cluster {
        let free = free_ports(6);
        let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
        let route = |p: u16| format!("nats://127.0.0.1:{p}");
        let nodes: Vec<Server> = ports
            .iter()
            .enumerate()
            .map(|(i, &(port, cport))| {
                let routes: Vec<String> = ports
                    .iter()
                    .filter(|&&(_, c)| c != cport)
                    .map(|&(_, c)| route(c))
                    .collect();
                let args = [
                    "--cluster".to_string(),
                    route(cport),
                    "--routes".to_string(),
                    routes.join(","),
                    "--cluster_name".to_string(),
                    "BENCH".to_string(),
                    "-n".to_string(),
                    format!("bench-{i}"),
                ];
                Server::launch(port, &args, i == 0)
            })
            .collect();
        let cluster = Cluster { nodes };
        cluster.wait_ready().await;
        eprintln!(
            "cluster of {} nodes ready: {}",
            cluster.nodes.len(),
            cluster.urls().join(", ")
        );
        cluster
    }

    /// Waits (60 s at most) until `$JS.API.INFO` answers and a stream of
    /// 3 replicas can be created (and deletes it).
    async fn wait_ready(&self) {
        let started = Instant::now();
        let nc = async_nats::connect(self.url()).await.expect("cluster node");
        let js = async_nats::jetstream::new(nc);
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the cluster's JetStream has no meta leader or too few peers"
            );
            if js.query_account().await.is_ok() {
                let config = async_nats::jetstream::stream::Config {
                    name: "BENCH_CLUSTER_READY".into(),
                    subjects: vec!["bench.cluster.ready".into()],
                    num_replicas: 3,
                    ..Default::default()
                };
                if js.create_stream(config).await.is_ok() {
                    let _ = js.delete_stream("BENCH_CLUSTER_READY").await;
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The first node's URL (the clients' server).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// The nodes' process ids (for their CPU time).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.pid()).collect()
    }
}
