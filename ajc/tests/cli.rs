//! `ajc` against a real nats-server: every command, golden human output
//! (ids and times masked) in `tests/expected/`, parsed `--json` output,
//! workers on Go-format tasks, crash recovery and error handling.
//!
//! Set `AJC_UPDATE_EXPECTED=1` to rewrite the expected files.

mod support;
use asyncjobs::{Queue, TaskState};
use asyncjobs_tests::{
    free_port, golden, golden_config, instance_config, js_api, wait_for, wait_for_state, NatsServer,
};
use base64::Engine;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use support::expect;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_ajc");

/// Output of one `ajc` run.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Asserts success and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "ajc failed: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        &self.stdout
    }

    /// Asserts exit status 1 with a message (and no panic), returning stderr.
    fn fails(&self) -> &str {
        assert_eq!(self.code, 1, "ajc should have failed: {self:#?}");
        assert!(
            !self.stderr.trim().is_empty(),
            "no error message: {self:#?}"
        );
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        &self.stderr
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// A server plus an empty config dir for NATS contexts.
struct Env {
    server: NatsServer,
    config: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            server: NatsServer::start(),
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// `ajc` with a clean environment (no contexts, stdin not a terminal).
    fn cmd(&self, with_server: bool) -> Command {
        let mut c = self.clean(BIN);
        if with_server {
            c.arg("--server").arg(self.server.url());
        }
        c
    }

    /// `program` with the environment variables ajc reads removed and the
    /// config dir pointing at this test's (empty) one.
    fn clean(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for var in [
            "CONTEXT",
            "NATS_URL",
            "AJC_DEBUG",
            "AJC_TYPE",
            "AJC_QUEUE",
            "AJC_CONCURRENCY",
            "AJC_COMMAND",
            "AJC_SCHEDULER_NAME",
            "AJC_MONITOR_BIND",
            "RUST_LOG",
        ] {
            c.env_remove(var);
        }
        c.env("XDG_CONFIG_HOME", self.config.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// `ajc ARGS` on a pseudo-terminal (util-linux `script`), typing
    /// `input`; stdout holds everything the terminal showed.
    async fn run_on_terminal(&self, args: &[&str], input: &str) -> Out {
        let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
        let mut line = vec![quote(BIN), "--server".into(), quote(&self.server.url())];
        line.extend(args.iter().map(|a| quote(a)));
        let mut c = self.clean("script");
        c.args(["-q", "-e", "-c", &line.join(" "), "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("running script(1) from util-linux");
        let mut stdin = child.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stdin, input.as_bytes())
            .await
            .unwrap();
        drop(stdin);
        let o = child.wait_with_output().await.unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n"),
            stderr: String::from_utf8_lossy(&o.stderr).to_string(),
        }
    }

    async fn run(&self, args: &[&str]) -> Out {
        let mut c = self.cmd(true);
        c.args(args);
        output(c).await
    }

    async fn run_without_server(&self, args: &[&str]) -> Out {
        let mut c = self.cmd(false);
        c.args(args);
        output(c).await
    }

    async fn nats(&self) -> async_nats::Client {
        async_nats::connect(self.server.url()).await.unwrap()
    }

    async fn client(&self) -> asyncjobs::Client {
        asyncjobs::Client::builder()
            .url(self.server.url())
            .no_storage_init()
            .build()
            .await
            .unwrap()
    }
}

async fn output(mut c: Command) -> Out {
    let o = c.output().await.expect("running ajc");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).to_string(),
        stderr: String::from_utf8_lossy(&o.stderr).to_string(),
    }
}

/// Masks what changes between runs: task ids, Go-layout times and ages.
fn mask(text: &str, ids: &[&str]) -> String {
    let mut t = text.to_string();
    for (i, id) in ids.iter().enumerate() {
        t = t.replace(id, &format!("<ID{i}>"));
    }
    let time = regex::Regex::new(r"\d\d [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d UTC").unwrap();
    let t = time.replace_all(&t, "<TIME>");
    let age = regex::Regex::new(r"\((-?[0-9.]+s|[0-9ydhm]+s)\)").unwrap();
    age.replace_all(&t, "(<AGE>)").to_string()
}

async fn stream_names(nc: &async_nats::Client) -> Vec<String> {
    let v = js_api(nc, "STREAM.NAMES", "{}").await;
    let mut names: Vec<String> = v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn task_id(enqueued: &str) -> String {
    enqueued
        .trim()
        .strip_prefix("Enqueued task ")
        .unwrap_or_else(|| panic!("unexpected output {enqueued:?}"))
        .to_string()
}

fn payload_of(task: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(task["payload"].as_str().unwrap())
        .unwrap()
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_create_nothing() {
    let env = Env::new();
    let info = env.run(&["info"]).await;
    expect("info_empty.txt", info.ok());
    assert_eq!(env.run(&["queue", "ls"]).await.ok(), "No queues defined\n");
    assert_eq!(
        env.run(&["q", "ls", "--json"]).await.json(),
        Value::Array(vec![])
    );
    let j = env.run(&["info", "--json"]).await.json();
    assert!(j["tasks"].is_null() && j["configuration"].is_null());
    assert!(env
        .run(&["task", "ls"])
        .await
        .fails()
        .contains("storage not ready"));
    assert!(env
        .run(&["task", "view", "x"])
        .await
        .fails()
        .contains("storage not ready"));
    assert_eq!(
        env.run(&["task", "cron", "ls"]).await.ok(),
        "No Scheduled Tasks found\n"
    );
    env.run(&["queue", "info", "DEFAULT"]).await.fails();
    env.run(&["queue", "purge", "-f", "DEFAULT"]).await.fails();
    env.run(&["task", "purge", "-f"]).await.fails();
    env.run(&["task", "cron", "view", "x"]).await.fails();
    assert!(stream_names(&env.nats().await).await.is_empty());

    // the initialization flags of info do create storage, as in Go
    env.run(&["info", "--replica", "1"]).await.ok();
    assert_eq!(
        stream_names(&env.nats().await).await,
        [
            "CHORIA_AJ_Q_DEFAULT",
            "CHORIA_AJ_TASKS",
            "KV_CHORIA_AJ_CONFIGURATION",
            "KV_CHORIA_AJ_ELECTIONS"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_commands() {
    let env = Env::new();
    let add = env
        .run(&[
            "queue",
            "add",
            "EMAIL",
            "--tries",
            "5",
            "--run-time",
            "30s",
            "--entries",
            "1000",
            "--discard-old",
            "--concurrent",
            "20",
        ])
        .await;
    expect("queue_add.txt", add.ok());
    assert!(env
        .run(&["queue", "add", "EMAIL"])
        .await
        .fails()
        .contains("queue EMAIL already exist"));
    env.run(&["q", "new", "BULK", "--age", "1h"]).await.ok();

    expect("queue_info.txt", env.run(&["q", "i", "EMAIL"]).await.ok());
    let j = env.run(&["queue", "view", "EMAIL", "--json"]).await.json();
    assert_eq!(j["name"], "EMAIL");
    assert_eq!(j["max_tries"], 5);
    assert_eq!(j["max_runtime"], 30_000_000_000u64);
    assert_eq!(j["max_concurrent"], 20);
    assert_eq!(j["max_entries"], 1000);
    assert_eq!(j["discard_old"], true);
    assert_eq!(j["has_consumer"], true);

    let cfg = env
        .run(&[
            "queue",
            "configure",
            "EMAIL",
            "--tries",
            "7",
            "--run-time",
            "2m",
            "--age",
            "1h",
        ])
        .await;
    expect("queue_configure.txt", cfg.ok());
    assert_eq!(
        env.run(&["q", "cfg", "EMAIL", "--age", "1m"])
            .await
            .fails()
            .trim(),
        "ajc runtime error: shortest max age is 2 minutes"
    );
    assert!(env
        .run(&["q", "config", "EMAIL", "--run-time", "500ms"])
        .await
        .fails()
        .contains("shortest run-time is 1 second"));
    assert!(env
        .run(&["q", "cfg", "EMAIL", "--concurrent", "10001"])
        .await
        .fails()
        .contains("largest concurrency is 10000"));
    // sentinels leave everything else unchanged
    let j = env.run(&["q", "cfg", "EMAIL", "--json"]).await.json();
    assert_eq!(j["max_tries"], 7);
    assert_eq!(j["max_runtime"], 120_000_000_000u64);

    // one item in BULK so the sort by item count shows
    env.run(&["task", "add", "-q", "BULK", "x", "{}"])
        .await
        .ok();
    expect("queue_ls.txt", env.run(&["queue", "ls"]).await.ok());
    let list = env.run(&["queue", "ls", "--json"]).await.json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["BULK", "EMAIL"]);

    // destructive commands need -f without a terminal
    assert_eq!(
        env.run(&["queue", "purge", "BULK"]).await.fails().trim(),
        "ajc runtime error: cannot ask for confirmation without a terminal: pass -f to go ahead without asking"
    );
    assert_eq!(
        env.run(&["queue", "purge", "BULK", "-f"]).await.ok(),
        "Queue BULK was purged\n"
    );
    assert_eq!(
        env.run(&["q", "i", "BULK", "-j"]).await.json()["entries"],
        0
    );
    // --terminate-tasks marks the tasks whose items it removes
    env.run(&["task", "add", "-q", "BULK", "x", "{}"])
        .await
        .ok();
    assert_eq!(
        env.run(&["queue", "purge", "BULK", "-f", "--terminate-tasks"])
            .await
            .ok(),
        "Queue BULK was purged\nMarked 1 waiting task(s) terminated\n"
    );
    let tasks = env.run(&["task", "ls", "--json"]).await.json();
    let states: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["queue"] == "BULK")
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["new", "terminated"],
        "the first purge left its task new"
    );
    env.run(&["queue", "rm", "EMAIL"]).await.fails();
    assert_eq!(
        env.run(&["queue", "rm", "-f", "EMAIL"]).await.ok(),
        "Queue EMAIL was removed\n"
    );
    assert!(env
        .run(&["queue", "info", "EMAIL"])
        .await
        .fails()
        .contains("queue not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_without_consumer_are_listed() {
    let env = Env::new();
    env.run(&["queue", "add", "GOOD"]).await.ok();
    let nc = env.nats().await;
    let created = js_api(
        &nc,
        "STREAM.CREATE.CHORIA_AJ_Q_BROKEN",
        r#"{"name":"CHORIA_AJ_Q_BROKEN","subjects":["CHORIA_AJ.Q.BROKEN.>"],"retention":"workqueue","storage":"file","num_replicas":1}"#,
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");

    let ls = env.run(&["queue", "ls"]).await;
    assert!(ls.ok().contains("BROKEN (no consumer)"), "{ls:#?}");
    assert!(ls.stderr.contains("lack their WORKERS consumer"));
    let list = env.run(&["queue", "ls", "--json"]).await.json();
    let broken = list
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "BROKEN")
        .unwrap();
    assert_eq!(broken["has_consumer"], false);
    assert!(broken["max_tries"].is_null());
    expect(
        "queue_info_no_consumer.txt",
        env.run(&["q", "i", "BROKEN"]).await.ok(),
    );
    let info = env.run(&["info"]).await;
    assert!(info.ok().contains("BROKEN Work Queue:"));
    assert!(info.stdout.contains("GOOD Work Queue:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_commands() {
    let env = Env::new();
    // JSON payloads are stored as given; --raw-string stores Go's JSON string
    let id1 = task_id(
        env.run(&[
            "task",
            "add",
            "email:new",
            r#"{"to":"a@example.net"}"#,
            "--deadline",
            "1h",
            "--tries",
            "3",
        ])
        .await
        .ok(),
    );
    let id2 = task_id(
        env.run(&["t", "enqueue", "--raw-string", "email:new", r#"{"to":"b"}"#])
            .await
            .ok(),
    );
    let id3 = task_id(env.run(&["t", "a", "report", "plain text"]).await.ok());
    let id4 = task_id(
        env.run(&[
            "t",
            "new",
            "report",
            "[1,2]",
            "--depends",
            &format!("{id1}, {id2}"),
            "--depends",
            &id3,
            "--load",
        ])
        .await
        .ok(),
    );

    let v1 = env.run(&["task", "view", &id1, "--json"]).await.json();
    assert_eq!(payload_of(&v1), br#"{"to":"a@example.net"}"#);
    assert_eq!(v1["max_tries"], 3);
    assert_eq!(v1["queue"], "DEFAULT");
    assert_eq!(v1["state"], "new");
    assert!(v1["deadline"].is_string());
    let v2 = env.run(&["t", "v", &id2, "-j"]).await.json();
    assert_eq!(payload_of(&v2), br#""{\"to\":\"b\"}""#);
    assert_eq!(v2["max_tries"], 10);
    let v3 = env.run(&["t", "info", &id3, "-j"]).await.json();
    assert_eq!(payload_of(&v3), br#""plain text""#);
    let v4 = env.run(&["t", "show", &id4, "-j"]).await.json();
    assert_eq!(v4["state"], "blocked");
    assert_eq!(v4["dependencies"], serde_json::json!([id1, id2, id3]));
    assert_eq!(v4["load_dependencies"], true);

    let ids = [id1.as_str(), id2.as_str(), id3.as_str(), id4.as_str()];
    expect(
        "task_view.txt",
        &mask(env.run(&["task", "view", &id1]).await.ok(), &ids),
    );
    expect(
        "task_view_deps.txt",
        &mask(env.run(&["task", "i", &id4]).await.ok(), &ids),
    );
    expect(
        "task_ls.txt",
        &mask(env.run(&["task", "ls"]).await.ok(), &ids),
    );
    expect(
        "task_ls_limit.txt",
        &mask(env.run(&["task", "ls", "2"]).await.ok(), &ids),
    );

    // filters
    let by_type = env
        .run(&["task", "ls", "--type", "report", "--json"])
        .await
        .json();
    assert_eq!(by_type.as_array().unwrap().len(), 2);
    let blocked = env
        .run(&["t", "ls", "--state", "blocked", "-j"])
        .await
        .json();
    assert_eq!(blocked.as_array().unwrap().len(), 1);
    assert_eq!(blocked[0]["id"], id4.as_str());
    let none = env.run(&["t", "ls", "--queue", "OTHER"]).await;
    assert_eq!(none.ok(), "No matching tasks found\n");
    let states = env
        .run(&[
            "t",
            "ls",
            "--state",
            "new,blocked",
            "--type",
            "email:new",
            "-j",
        ])
        .await
        .json();
    assert_eq!(states.as_array().unwrap().len(), 2);
    assert!(env
        .run(&["t", "ls", "--state", "bogus"])
        .await
        .fails()
        .contains("unknown task state"));

    // retry into another queue
    env.run(&["queue", "add", "OTHER"]).await.ok();
    let retried = env
        .run(&["task", "retry", &id3, "-q", "OTHER", "--json"])
        .await
        .json();
    assert_eq!(retried["state"], "retry");
    assert_eq!(retried["queue"], "OTHER");
    let other = env.run(&["t", "ls", "-q", "OTHER", "-j"]).await.json();
    assert_eq!(other.as_array().unwrap().len(), 1);
    let retried_text = env.run(&["task", "retry", &id3, "-q", "OTHER"]).await;
    assert!(retried_text.ok().contains("Status: retry"));

    // removal
    env.run(&["task", "rm", &id2]).await.fails();
    assert_eq!(
        env.run(&["task", "del", "-f", &id2]).await.ok(),
        format!("Removed Task {id2}\n")
    );
    assert!(env
        .run(&["task", "view", &id2])
        .await
        .fails()
        .contains("task not found"));
    assert!(env
        .run(&["task", "rm", "-f", &id2])
        .await
        .fails()
        .contains("task not found"));
    assert!(env
        .run(&["task", "purge"])
        .await
        .fails()
        .contains("cannot ask for confirmation without a terminal"));
    assert_eq!(
        env.run(&["task", "purge", "-f"]).await.ok(),
        "Purged all task entries\n"
    );
    assert!(env
        .run(&["task", "ls"])
        .await
        .fails()
        .contains("no tasks found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_store_initialize_and_configure() {
    let env = Env::new();
    let init = env
        .run(&["task", "initialize", "--retention", "24h", "--memory"])
        .await;
    expect("task_initialize.txt", init.ok());
    assert_eq!(stream_names(&env.nats().await).await, ["CHORIA_AJ_TASKS"]);
    // an existing store is left unchanged
    let again = env.run(&["task", "initialize", "--json"]).await.json();
    assert_eq!(again["archive_period"], 86_400_000_000_000u64);
    assert_eq!(again["memory"], true);

    let cfg = env.run(&["task", "configure", "1h", "1"]).await;
    expect("task_configure.txt", cfg.ok());
    let j = env.run(&["task", "cfg", "0s", "1", "--json"]).await.json();
    assert_eq!(j["archive_period"], 0);
    assert!(env
        .run(&["task", "configure", "1h", "9"])
        .await
        .fails()
        .contains("replicas must be between 1 and 5"));
    env.run(&["task", "configure", "soon", "1"]).await.fails();

    // the full info with initialized storage
    env.run(&[
        "queue",
        "add",
        "DEFAULT",
        "--run-time",
        "1m",
        "--tries",
        "100",
    ])
    .await
    .ok();
    expect("info_initialized.txt", env.run(&["info"]).await.ok());
    let j = env.run(&["info", "-j"]).await.json();
    assert_eq!(j["tasks"]["entries"], 0);
    assert_eq!(j["queues"][0]["name"], "DEFAULT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_commands() {
    let env = Env::new();
    let add = env
        .run(&[
            "task",
            "cron",
            "add",
            "daily_report",
            "daily",
            "report:daily",
            "--payload",
            r#"{"format":"pdf"}"#,
            "--deadline",
            "1h",
            "--tries",
            "3",
        ])
        .await;
    expect("cron_add.txt", &mask(add.ok(), &[]));
    let j = env
        .run(&["t", "c", "view", "daily_report", "-j"])
        .await
        .json();
    assert_eq!(j["schedule"], "@daily");
    assert_eq!(j["deadline"], 3_600_000_000_000u64);
    assert_eq!(j["max_tries"], 3);
    assert_eq!(payload_of(&j), br#"{"format":"pdf"}"#);

    let warn = env
        .run(&[
            "task",
            "cron",
            "new",
            "every_min",
            "*/1 * * * *",
            "ping",
            "-q",
            "NOWHERE",
            "--raw-string",
            "--payload",
            "hi",
        ])
        .await;
    warn.ok();
    assert!(
        warn.stderr.contains("queue NOWHERE does not exist"),
        "{warn:#?}"
    );
    let j = env
        .run(&["task", "cron", "show", "every_min", "--json"])
        .await
        .json();
    assert_eq!(payload_of(&j), br#""hi""#);

    assert!(env
        .run(&["task", "cron", "add", "bad", "* * * * 7", "x"])
        .await
        .fails()
        .contains("invalid cron schedule"));
    assert!(env
        .run(&["task", "cron", "add", "daily_report", "@daily", "x"])
        .await
        .fails()
        .contains("scheduled task already exist"));

    assert_eq!(
        env.run(&["task", "cron", "ls", "--names"]).await.ok(),
        "daily_report\nevery_min\n"
    );
    // no scheduler runs: every schedule is unfired (docs/processing.md §2.20)
    let ls = env.run(&["task", "cron", "ls"]).await;
    assert!(
        ls.stderr
            .contains("no scheduler leads the election, so no process fires these 2 schedule(s)"),
        "{ls:#?}"
    );
    expect("cron_ls.txt", &mask(ls.ok(), &[]));
    assert_eq!(
        env.run(&["task", "cron", "ls", "--unfired", "--names"])
            .await
            .ok(),
        "daily_report\nevery_min\n"
    );
    let list = env.run(&["t", "c", "ls", "--json"]).await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);

    // ours: pause, resume, run now
    let paused = env
        .run(&["task", "cron", "pause", "daily_report"])
        .await
        .ok()
        .to_string();
    assert!(
        paused.contains("Paused: yes (Rust schedulers make no task from it)"),
        "{paused}"
    );
    let j = env
        .run(&["task", "cron", "view", "daily_report", "--json"])
        .await
        .json();
    assert_eq!(j["paused"], true);
    let resumed = env
        .run(&["task", "cron", "resume", "daily_report"])
        .await
        .ok()
        .to_string();
    assert!(!resumed.contains("Paused"), "{resumed}");
    let made = env
        .run(&["task", "cron", "run", "daily_report", "--json"])
        .await
        .json();
    assert_eq!(
        (made["type"].as_str(), made["queue"].as_str()),
        (Some("report:daily"), Some("DEFAULT"))
    );
    let said = env
        .run(&["task", "cron", "run", "daily_report"])
        .await
        .ok()
        .to_string();
    assert!(
        said.starts_with("Created task ")
            && said.ends_with(" in queue DEFAULT from Scheduled Task daily_report\n"),
        "{said}"
    );
    assert!(env
        .run(&["task", "cron", "pause", "nope"])
        .await
        .fails()
        .contains("scheduled task not found"));

    env.run(&["task", "cron", "rm", "every_min"]).await.fails();
    assert_eq!(
        env.run(&["task", "cron", "rm", "-f", "every_min"])
            .await
            .ok(),
        "Removed Scheduled Task every_min\n"
    );
    assert!(env
        .run(&["task", "cron", "view", "every_min"])
        .await
        .fails()
        .contains("scheduled task not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_creates_tasks() {
    let env = Env::new();
    env.run(&[
        "task",
        "cron",
        "add",
        "tick",
        "@every 1s",
        "tick:tock",
        "--payload",
        r#"{"n":1}"#,
    ])
    .await
    .ok();
    // written as Go writes it: every scheduler gives its tasks Go's payload
    let go = env
        .run(&[
            "task",
            "cron",
            "add",
            "tick-go",
            "@every 1s",
            "tick:go",
            "--payload",
            r#"{"n":1}"#,
            "--go-encoding",
            "--json",
        ])
        .await
        .json();
    assert!(go.get("payload_encoding").is_none(), "{go}");
    let mut sched = env.cmd(true);
    sched
        .args(["task", "cron", "scheduler", "s1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = sched.spawn().unwrap();
    let client = env.client().await;
    // the election is won after the splay plus one campaign interval
    let found = scheduled_task_of_type(&client, "tick:tock").await;
    assert_eq!(found.payload.as_deref(), Some(br#"{"n":1}"#.as_slice()));
    assert_eq!(found.queue, "DEFAULT");
    let go_task = scheduled_task_of_type(&client, "tick:go").await;
    // the JSON string of the base64 of {"n":1}, as a Go leader makes it
    assert_eq!(
        go_task.payload.as_deref(),
        Some(br#""eyJuIjoxfQ==""#.as_slice())
    );
    // a leader fires them: none is unfired, the table names it
    assert_eq!(
        env.run(&["task", "cron", "ls", "--unfired", "--names"])
            .await
            .ok(),
        ""
    );
    let ls = env.run(&["task", "cron", "ls"]).await;
    assert!(!ls.stderr.contains("no scheduler leads"), "{ls:#?}");
    let table = ls.ok();
    assert!(
        table.contains("Fired By") && table.contains(" s1") && !table.contains("unfired"),
        "{table}"
    );
    child.kill().await.unwrap();
}

/// A task record shaped like the Go-written `golden/task_new.json`, with a
/// fresh id and creation time, and its work item.
async fn publish_go_task(nc: &async_nats::Client, queue: &str, payload_b64: &str) -> String {
    let mut task: Value =
        serde_json::from_slice(&std::fs::read(golden("task_new.json")).unwrap()).unwrap();
    let id = asyncjobs::task::new_id();
    task["id"] = id.clone().into();
    task["queue"] = queue.into();
    task["payload"] = payload_b64.into();
    task["created"] = asyncjobs_now().into();
    let js = async_nats::jetstream::new(nc.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
    js.publish_with_headers(
        format!("CHORIA_AJ.T.{id}"),
        headers,
        serde_json::to_vec(&task).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let item: Value =
        serde_json::from_slice(&std::fs::read(golden("process_item.json")).unwrap()).unwrap();
    let mut item = item;
    item["job"] = id.clone().into();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id.as_str());
    js.publish_with_headers(
        format!("CHORIA_AJ.Q.{queue}.{id}"),
        headers,
        serde_json::to_vec(&item).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    id
}

fn asyncjobs_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_completes_go_format_tasks() {
    let env = Env::new();
    // storage as a Go client creates it
    asyncjobs_tests::client(&env.server, Queue::default_queue()).await;
    let nc = env.nats().await;
    let dir = tempfile::tempdir().unwrap();
    write_script(
        dir.path(),
        "handler.sh",
        "#!/bin/sh\n/bin/cat \"$CHORIA_AJ_TASK\" > /dev/null || exit 1\necho handled\n",
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(publish_go_task(&nc, "DEFAULT", "eyJoZWxsbyI6IndvcmxkIiwibiI6MX0=").await);
    }
    let port = free_port();
    let mut cmd = env.cmd(true);
    cmd.args([
        "task",
        "process",
        "",
        "DEFAULT",
        "4",
        "./handler.sh",
        "--monitor",
        &port.to_string(),
        "--monitor-bind",
        "127.0.0.1",
    ])
    .current_dir(dir.path())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let client = env.client().await;
    for id in &ids {
        let t = wait_for_state(&client, id, TaskState::Complete, Duration::from_secs(15)).await;
        assert_eq!(t.result.unwrap().payload.get(), r#""handled\n""#);
        assert_eq!(t.tries, 1);
    }
    // a task added by ajc itself, then the metrics
    let id = task_id(
        env.run(&["task", "add", "golden:ok", r#"{"a":1}"#])
            .await
            .ok(),
    );
    wait_for_state(&client, &id, TaskState::Complete, Duration::from_secs(15)).await;
    let metrics = http_get(port, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("choria_asyncjobs_task_update_total"),
        "{metrics}"
    );
    assert!(http_get(port, "/nope").await.starts_with("HTTP/1.1 404"));
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_process_loses_no_task() {
    let env = Env::new();
    env.run(&["queue", "add", "CRASH", "--run-time", "2s"])
        .await
        .ok();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("first_started");
    let pidfile = dir.path().join("first.pid");
    let handler = write_script(
        dir.path(),
        "handler.sh",
        &format!(
            "#!/bin/sh\nif [ -e {m} ]; then echo second; exit 0; fi\n: > {m}\necho $$ > {p}\nexec /bin/sleep 30\n",
            m = marker.display(),
            p = pidfile.display()
        ),
    );
    let start = || {
        let mut c = env.cmd(true);
        c.args(["task", "process", "crash", "CRASH", "1"])
            .arg(&handler)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().unwrap()
    };
    let mut first: Child = start();
    let id = task_id(
        env.run(&["task", "add", "-q", "CRASH", "crash", "{}"])
            .await
            .ok(),
    );
    let client = env.client().await;
    wait_for(
        Duration::from_secs(15),
        "the first handler to start",
        || {
            let ready = std::fs::read_to_string(&pidfile)
                .ok()
                .filter(|p| p.ends_with('\n'));
            async move { ready }
        },
    )
    .await;
    first.kill().await.unwrap(); // SIGKILL: no chance to hand the task back
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status();
    assert_eq!(
        client.load_task(&id).await.unwrap().state,
        TaskState::Active
    );

    let mut second = start();
    let t = wait_for_state(&client, &id, TaskState::Complete, Duration::from_secs(20)).await;
    assert_eq!(t.result.unwrap().payload.get(), r#""second\n""#);
    assert_eq!(t.tries, 2);
    second.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_remote_request_reply() {
    use asyncjobs::remote::RequestReplyServer;
    let env = Env::new();
    env.run(&["queue", "add", "REMOTE"]).await.ok();
    let service = RequestReplyServer::new(
        env.nats().await,
        "remote:echo",
        |ctx: asyncjobs::TaskContext, _t: asyncjobs::Task| async move {
            asyncjobs::handler::to_output(&format!("echo {}", ctx.tries()))
        },
    )
    .start()
    .await
    .unwrap();
    let mut cmd = env.cmd(true);
    cmd.args([
        "task",
        "process",
        "remote:echo",
        "REMOTE",
        "2",
        "--remote",
        "--backoff",
        "1m",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let id = task_id(
        env.run(&["task", "add", "-q", "REMOTE", "remote:echo", r#"{"x":1}"#])
            .await
            .ok(),
    );
    let client = env.client().await;
    let t = wait_for_state(&client, &id, TaskState::Complete, Duration::from_secs(15)).await;
    assert!(t.result.is_some());
    child.kill().await.unwrap();
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_events() {
    let env = Env::new();
    env.run(&["task", "initialize"]).await.ok();
    env.run(&["queue", "add", "DEFAULT"]).await.ok();
    let mut cmd = env.cmd(true);
    cmd.args(["task", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // the subscription may not be ready yet: add tasks until a line shows
    let line = loop {
        let id = task_id(env.run(&["task", "add", "watch:me", "{}"]).await.ok());
        if let Ok(Ok(Some(l))) =
            tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
        {
            break (id, l);
        }
    };
    let re = regex::Regex::new(
        r"^\[\d\d:\d\d:\d\d\] \S+: queue: DEFAULT type: watch:me tries: 0 state: new$",
    )
    .unwrap();
    assert!(re.is_match(&line.1), "{line:?}");
    child.kill().await.unwrap();

    // --json prints the event documents
    let mut cmd = env.cmd(true);
    cmd.args(["task", "watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let event: Value = loop {
        env.run(&["task", "add", "watch:json", "{}"]).await.ok();
        if let Ok(Ok(Some(l))) =
            tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
        {
            break serde_json::from_str(&l).unwrap();
        }
    };
    assert_eq!(event["type"], "io.choria.asyncjobs.v1.task_state");
    assert_eq!(event["task_type"], "watch:json");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_flags() {
    let env = Env::new();
    let seed = golden("signing_seed.hex");
    let public = std::fs::read_to_string(golden("signing_public.hex")).unwrap();
    let id = task_id(
        env.run(&[
            "task",
            "--sign",
            seed.to_str().unwrap(),
            "add",
            "signed",
            "{}",
        ])
        .await
        .ok(),
    );
    let j = env
        .run(&["task", "view", &id, "--verify", public.trim(), "-j"])
        .await
        .json();
    assert_eq!(j["signature"].as_str().unwrap().len(), 128);
    // a hex seed signs too; another key does not verify
    let seed_hex = std::fs::read_to_string(&seed).unwrap();
    let id2 = task_id(
        env.run(&["task", "add", "signed", "{}", "--sign", seed_hex.trim()])
            .await
            .ok(),
    );
    let other = asyncjobs::signing::Keys::from_seed([7; 32])
        .public_hex()
        .unwrap();
    assert!(env
        .run(&["task", "--verify", &other, "view", &id2])
        .await
        .fails()
        .contains("invalid task signature"));
    // an unsigned task fails verification, but --sign alone still reads it
    let id3 = task_id(env.run(&["task", "add", "plain", "{}"]).await.ok());
    env.run(&["task", "--sign", seed_hex.trim(), "view", &id3])
        .await
        .ok();
    assert!(env
        .run(&["task", "--verify", public.trim(), "view", &id3])
        .await
        .fails()
        .contains("not signed"));

    // bad key material: clear errors
    assert!(env
        .run(&["task", "--sign", "zz", "view", &id])
        .await
        .fails()
        .contains("neither an existing file nor a hex encoded ed25519 seed"));
    assert!(env
        .run(&["task", "--sign", "0102", "view", &id])
        .await
        .fails()
        .contains("--sign"));
    assert!(env
        .run(&["task", "--verify", "abc", "view", &id])
        .await
        .fails()
        .contains("--verify"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.hex");
    std::fs::write(&bad, "not a key").unwrap();
    assert!(env
        .run(&["task", "--verify", bad.to_str().unwrap(), "view", &id])
        .await
        .fails()
        .contains(bad.to_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts() {
    let env = Env::new();
    let dir = env.config.path().join("nats/context");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("AJC.json"),
        format!(r#"{{"description":"test","url":"{}"}}"#, env.server.url()),
    )
    .unwrap();
    std::fs::write(dir.join("other.json"), r#"{"url":"nats://127.0.0.1:1"}"#).unwrap();
    assert_eq!(
        env.run_without_server(&["queue", "ls"]).await.ok(),
        "No queues defined\n"
    );
    // --context and CONTEXT choose another context
    assert!(env
        .run_without_server(&["--context", "other", "queue", "ls"])
        .await
        .fails()
        .contains("cannot connect"));
    let mut c = env.cmd(false);
    c.env("CONTEXT", "other").args(["queue", "ls"]);
    output(c).await.fails();
    // --server overrides the context's URL
    env.run(&["--context", "other", "queue", "ls"]).await.ok();
    let unknown = env
        .run_without_server(&["--context", "missing", "info"])
        .await;
    let err = unknown.fails();
    assert!(
        err.contains(r#"ajc: no NATS context "missing" found"#),
        "{unknown:#?}"
    );
    assert!(err.contains("Known contexts: AJC"), "{unknown:#?}");
    assert!(env
        .run_without_server(&["--context", "", "info"])
        .await
        .fails()
        .contains("no NATS Context specified"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_1_without_panics() {
    let env = Env::new();
    // no context and no server
    let out = env.run_without_server(&["info"]).await;
    assert!(out.fails().contains(r#"no NATS context "AJC" found"#));
    // server down
    let mut c = env.cmd(false);
    c.args(["--server", "nats://127.0.0.1:1", "queue", "ls"]);
    assert!(output(c).await.fails().contains("cannot connect to NATS"));
    let mut c = env.cmd(false);
    c.args(["--server", "::::", "queue", "ls"]);
    output(c).await.fails();
    // usage errors
    env.run(&[]).await.fails();
    env.run(&["bogus"]).await.fails();
    assert!(env
        .run(&["task", "add", "x", "y", "--deadline", "5x"])
        .await
        .fails()
        .contains(r#"unknown unit "x" in duration "5x""#));
    env.run(&["task", "add", "x", "y", "--deadline", "-5s"])
        .await
        .fails();
    env.run(&["queue", "add", "Q", "--run-time", "1hh"])
        .await
        .fails();
    env.run(&["task", "ls", "many"]).await.fails();
    env.run(&["task", "process", "x", "DEFAULT", "lots", "/bin/true"])
        .await
        .fails();
    // bad payloads and types
    assert!(env
        .run(&["task", "add", "x", "{bad json"])
        .await
        .fails()
        .contains("not valid JSON"));
    assert!(env
        .run(&["task", "add", "bad type", "{}"])
        .await
        .fails()
        .contains("task type is invalid"));
    // missing files and commands
    assert!(env
        .run(&["task", "process", "x", "DEFAULT", "1", "/does/not/exist"])
        .await
        .fails()
        .contains("command not found"));
    assert!(env
        .run(&["task", "process", "x", "DEFAULT", "1"])
        .await
        .fails()
        .contains("either a command or --remote is required"));
    env.run(&["task", "process", "x", "DEFAULT", "0", "/bin/true"])
        .await
        .fails();
    // missing things on the server
    assert!(env
        .run(&["task", "add", "-q", "NOPE", "x", "{}"])
        .await
        .fails()
        .contains("queue not found"));
    assert!(env
        .run(&["task", "process", "x", "NOPE", "1", "--remote"])
        .await
        .fails()
        .contains("queue not found"));
    assert!(env
        .run(&["task", "view", "nope"])
        .await
        .fails()
        .contains("task not found"));
    assert!(env
        .run(&["task", "view", "bad id!"])
        .await
        .fails()
        .contains("invalid"));
    env.run(&["task", "retry", "nope"]).await.fails();
    env.run(&["task", "cron", "view", "bad name!"])
        .await
        .fails();
    env.run(&["queue", "add", "bad.name"]).await.fails();
    env.run(&["queue", "add", "R", "--replicas", "9"])
        .await
        .fails();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_prompts_boxed_tables_and_progress() {
    let env = Env::new();
    env.run(&["queue", "add", "X"]).await.ok();

    // declining keeps the queue
    let no = env.run_on_terminal(&["queue", "rm", "X"], "n\n").await;
    assert_eq!(no.code, 0, "{no:#?}");
    assert!(
        no.stdout
            .contains("? Really delete the X Queue with 0 entries and 0 active polls (y/N)"),
        "{no:#?}"
    );
    assert!(!no.stdout.contains("was removed"), "{no:#?}");
    assert_eq!(
        env.run(&["queue", "info", "X", "--json"]).await.json()["name"],
        "X"
    );

    // accepting removes it
    let yes = env.run_on_terminal(&["queue", "rm", "X"], "y\n").await;
    assert_eq!(yes.code, 0, "{yes:#?}");
    assert!(yes.stdout.contains("Queue X was removed"), "{yes:#?}");
    assert_eq!(env.run(&["queue", "ls"]).await.ok(), "No queues defined\n");

    // on a terminal: a progress line while listing, then a boxed table with a title
    let id = task_id(env.run(&["task", "add", "t", "{}"]).await.ok());
    let ls = env.run_on_terminal(&["task", "ls"], "").await;
    assert_eq!(ls.code, 0, "{ls:#?}");
    assert!(ls.stdout.contains("Listing tasks 1 / 1"), "{ls:#?}");
    assert!(
        ls.stdout.contains("│") && ls.stdout.contains("1 Tasks"),
        "{ls:#?}"
    );
    assert!(ls.stdout.contains(&id), "{ls:#?}");
    // the same command off a terminal: plain columns, no progress
    let plain = env.run(&["task", "ls"]).await;
    assert!(
        !plain.ok().contains("│") && !plain.stderr.contains("Listing"),
        "{plain:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_initialize_creates_the_store_go_creates() {
    let env = Env::new();
    env.run(&["task", "initialize"]).await.ok();
    let ours = js_api(&env.nats().await, "STREAM.INFO.CHORIA_AJ_TASKS", "").await;
    assert_eq!(
        instance_config(&ours),
        golden_config("stream_CHORIA_AJ_TASKS.info.json")
    );
}

impl Env {
    /// `ajc ARGS` with `input` on standard input (not a terminal).
    async fn run_with_input(&self, args: &[&str], input: &[u8]) -> Out {
        let mut c = self.cmd(true);
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("running ajc");
        let mut stdin = child.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stdin, input)
            .await
            .unwrap();
        drop(stdin);
        let o = child.wait_with_output().await.unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).to_string(),
        }
    }
}

/// Issue 21, item 10: payloads from a file or standard input (larger than
/// an argument may be), the decoded payload in `task view`, `task retry`
/// keeping the task's own queue, and refusals that mention `-f`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_hour_cli() {
    let env = Env::new();
    env.run(&["queue", "add", "EMAIL"]).await.ok();
    let big = format!(r#"{{"body":"{}"}}"#, "x".repeat(300_000));
    let file = env.config.path().join("payload.json");
    std::fs::write(&file, &big).unwrap();
    let from_file = task_id(
        env.run(&[
            "task",
            "add",
            "big",
            "--payload-file",
            file.to_str().unwrap(),
            "-q",
            "EMAIL",
        ])
        .await
        .ok(),
    );
    let v = env
        .run(&["task", "view", &from_file, "--json"])
        .await
        .json();
    assert_eq!(payload_of(&v), big.as_bytes());
    let from_stdin = task_id(
        env.run_with_input(
            &["task", "add", "small", "--payload-file", "-", "-q", "EMAIL"],
            br#"{"to":"a@example.net"}"#,
        )
        .await
        .ok(),
    );
    let view = env.run(&["task", "view", &from_stdin]).await;
    assert!(
        view.ok()
            .contains("Payload:\n{\n  \"to\": \"a@example.net\"\n}"),
        "{view:#?}"
    );
    let none = env.run(&["task", "add", "none"]).await;
    assert!(
        none.code != 0 && none.stderr.contains("--payload-file"),
        "{none:#?}"
    );

    // retry keeps the task's own queue unless -q says otherwise
    let retried = env
        .run(&["task", "retry", &from_stdin, "--json"])
        .await
        .json();
    assert_eq!(retried["queue"], "EMAIL");
    let info = env.client().await.queue_info("EMAIL").await.unwrap();
    assert_eq!(info.stream.messages, 2);

    // a confirmation that cannot be asked, or is refused, says how to go ahead
    assert!(env
        .run(&["task", "rm", &from_stdin])
        .await
        .fails()
        .contains("pass -f"));
    let refused = env
        .run_on_terminal(&["task", "rm", &from_stdin], "n\n")
        .await;
    assert!(refused.stdout.contains("pass -f"), "{refused:#?}");
    env.run(&["task", "view", &from_stdin]).await.ok();
}

/// Issue 21, item 10: a wrong password is one line of error, not the NATS
/// client's own log line first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_one_line() {
    let env = Env::new();
    let secured = NatsServer::start_with(&["--user", "u", "--pass", "right"]);
    let url = secured.url().replace("nats://", "nats://u:wrong@");
    let mut c = env.cmd(false);
    c.args(["--server", &url, "queue", "ls"]);
    let out = output(c).await;
    let err = out.fails();
    assert_eq!(err.trim().lines().count(), 1, "{out:#?}");
    assert!(err.contains("authorization"), "{out:#?}");
}

/// The first stored task of `task_type`, waiting for a scheduler to make
/// it (the election is won after the splay plus one campaign interval).
async fn scheduled_task_of_type(client: &asyncjobs::Client, task_type: &str) -> asyncjobs::Task {
    wait_for(Duration::from_secs(25), task_type, || async {
        let mut s = client.list_tasks(100).await.ok()?;
        use futures::StreamExt;
        while let Some(t) = s.next().await {
            if let Ok(t) = t {
                if t.task_type == task_type {
                    return Some(t);
                }
            }
        }
        None
    })
    .await
}

/// `ajc task reconcile` expires a task whose work item is gone and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_expires_tasks_whose_item_is_gone() {
    let env = Env::new();
    let id = task_id(
        env.run(&["task", "add", "lost:one", r#"{"n":1}"#])
            .await
            .ok(),
    );
    assert_eq!(
        env.run(&["task", "reconcile", "--grace", "0s"])
            .await
            .ok()
            .trim(),
        "No task lost its work item"
    );
    env.client().await.purge_queue("DEFAULT").await.unwrap();
    let out = env.run(&["task", "reconcile", "--grace", "0s"]).await;
    assert!(
        out.ok()
            .contains(&format!("Expired {id}: its work item was lost")),
        "{out:#?}"
    );
    let t = env.run(&["task", "view", &id, "--json"]).await.json();
    assert_eq!(t["state"], "expired");
}

/// `task add --in/--at` enqueues a delayed task (shown by `task view` with
/// its due time), a deadline before it is refused, and `task retry` with
/// filters replays dead letters: the dry run lists them and changes
/// nothing, the replay summarises.
#[tokio::test]
async fn delayed_tasks_and_replay() {
    let env = Env::new();
    let out = env.run(&["task", "add", "later", "{}", "--in", "1h"]).await;
    let text = out.ok().to_string();
    assert!(text.contains("(due "), "{text}");
    let id = text.split_whitespace().nth(2).unwrap().to_string();
    let view = env.run(&["task", "view", &id]).await;
    assert!(view.ok().contains("Due"), "{view:#?}");
    let json = env.run(&["task", "view", &id, "--json"]).await.json();
    assert!(json["run_at"].is_string(), "{json}");
    let out = env
        .run(&["task", "add", "later", "{}", "--at", "not-a-time"])
        .await;
    assert!(out.fails().contains("--at"), "{out:#?}");
    let out = env
        .run(&[
            "task",
            "add",
            "later",
            "{}",
            "--in",
            "1h",
            "--deadline",
            "10m",
        ])
        .await;
    assert!(out.fails().contains("could never run"), "{out:#?}");

    // dead letters: two tasks of type `dl`, ended by hand as expired
    let client = env.client().await;
    let mut ids = vec![];
    for _ in 0..2 {
        let out = env.run(&["task", "add", "dl", "{}"]).await;
        ids.push(out.ok().split_whitespace().nth(2).unwrap().to_string());
    }
    let nc = env.nats().await;
    let js = async_nats::jetstream::new(nc);
    for id in &ids {
        let mut t = client.load_task(id).await.unwrap();
        t.state = TaskState::Expired;
        t.last_err = "past deadline".into();
        js.publish(format!("CHORIA_AJ.T.{id}"), t.to_json().unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let dry = env
        .run(&[
            "task",
            "retry",
            "--state",
            "expired",
            "--type",
            "dl",
            "--dry-run",
        ])
        .await;
    let listed = dry.ok().to_string();
    for id in &ids {
        assert!(listed.contains(id.as_str()), "{listed}");
        assert_eq!(
            client.load_task(id).await.unwrap().state,
            TaskState::Expired
        );
    }
    assert!(listed.contains("2 tasks would be replayed"), "{listed}");
    let done = env
        .run(&[
            "task", "retry", "--state", "expired", "--error", "deadline", "--json",
        ])
        .await
        .json();
    assert_eq!(done["matched"], 2, "{done}");
    assert_eq!(done["replayed"].as_array().unwrap().len(), 2);
    for id in &ids {
        assert_eq!(client.load_task(id).await.unwrap().state, TaskState::Retry);
    }
    // an id and filters do not mix
    let out = env.run(&["task", "retry", &id, "--state", "expired"]).await;
    out.fails();
}

/// `task process --otlp-endpoint` exports its spans over OTLP/HTTP: a
/// minimal receiver here gets `POST /v1/traces` (protobuf) once a task ran
/// and the worker stopped (the exporter flushes on the way out), and the
/// external command gets the try's `TRACEPARENT`. Needs ajc's feature
/// `otel` (`scripts/test` runs it with `cargo test -p ajc --features otel`).
#[cfg(feature = "otel")]
#[tokio::test]
async fn task_process_exports_traces_over_otlp() {
    let env = Env::new();
    let mut receiver = asyncjobs_tests::OtlpReceiver::start().await;
    let endpoint = receiver.endpoint.clone();
    env.run(&["queue", "add", "TRACED"]).await.ok();
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("traceparent");
    let handler = write_script(
        dir.path(),
        "handler.sh",
        &format!(
            "#!/bin/sh\necho \"$TRACEPARENT\" > {}\necho done\n",
            seen.display()
        ),
    );
    let mut worker = env.cmd(true);
    worker
        .args(["task", "process", "traced", "TRACED", "1"])
        .arg(&handler)
        .args(["--otlp-endpoint", &endpoint])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut worker: Child = worker.spawn().unwrap();
    let id = task_id(
        env.run(&["task", "add", "-q", "TRACED", "traced", "{}"])
            .await
            .ok(),
    );
    let client = env.client().await;
    wait_for_state(&client, &id, TaskState::Complete, Duration::from_secs(20)).await;
    let tp = std::fs::read_to_string(&seen).unwrap();
    let parts: Vec<&str> = tp.trim().split('-').collect();
    assert!(
        parts.len() == 4 && parts[1].len() == 32,
        "TRACEPARENT {tp:?}"
    );
    // stop the worker: SIGTERM, then the exporter flushes
    let pid = worker.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), worker.wait())
        .await
        .expect("ajc task process stops on SIGTERM")
        .unwrap();
    let head = receiver.next_head(Duration::from_secs(5)).await;
    assert!(head.starts_with("post /v1/traces"), "{head}");
    assert!(
        head.contains("content-type: application/x-protobuf"),
        "{head}"
    );
}

/// Without the feature `otel`, `--otlp-endpoint` is refused before anything
/// connects, naming the feature and the rebuild, rather than ignored.
#[cfg(not(feature = "otel"))]
#[tokio::test]
async fn a_lean_ajc_refuses_trace_export_naming_the_rebuild() {
    for args in [
        &["task", "process", "t", "Q", "1", "/bin/true"][..],
        &["server", "run"][..],
    ] {
        let out = std::process::Command::new(BIN)
            .args(args)
            .args(["--otlp-endpoint", "http://127.0.0.1:9"])
            .env("NATS_URL", "nats://127.0.0.1:1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cargo install --path ajc --features otel"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn queue_pause_and_resume() {
    let env = Env::new();
    env.run(&["queue", "new", "THUMBS"]).await.ok();

    let paused = env.run(&["queue", "pause", "THUMBS"]).await;
    let text = paused.ok();
    assert!(
        text.contains("          Paused: until resumed, since "),
        "{text}"
    );
    let j = env.run(&["queue", "info", "THUMBS", "--json"]).await.json();
    assert!(j["paused"]["until"].is_null(), "{j}");
    assert!(j["paused"]["since"].is_string(), "{j}");
    let ls = env.run(&["queue", "ls"]).await;
    assert!(ls.ok().contains("THUMBS (paused until resumed)"), "{ls:#?}");

    // --for: an end an hour from now
    let j = env
        .run(&["queue", "pause", "THUMBS", "--for", "1h", "--json"])
        .await
        .json();
    let until = asyncjobs::wire::parse_time(j["paused"]["until"].as_str().unwrap()).unwrap();
    let left = until - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(55) && left <= time::Duration::hours(1),
        "{j}"
    );
    // --until: that time
    let text = env
        .run(&[
            "queue",
            "pause",
            "THUMBS",
            "--until",
            "2030-01-02T03:04:05Z",
        ])
        .await;
    assert!(
        text.ok()
            .contains("          Paused: until 02 Jan 30 03:04:05 UTC, since "),
        "{text:#?}"
    );

    let resumed = env.run(&["queue", "resume", "THUMBS"]).await;
    assert!(!resumed.ok().contains("Paused"), "{resumed:#?}");
    let j = env.run(&["queue", "info", "THUMBS", "--json"]).await.json();
    assert!(j["paused"].is_null(), "{j}");

    // refusals name what they refused, and change nothing
    assert!(env
        .run(&["queue", "pause", "NOPE"])
        .await
        .fails()
        .contains("queue not found: NOPE"));
    assert!(env
        .run(&["queue", "resume", "NOPE"])
        .await
        .fails()
        .contains("queue not found: NOPE"));
    assert!(env
        .run(&["queue", "pause", "THUMBS", "--until", "tomorrow"])
        .await
        .fails()
        .contains("--until \"tomorrow\" is not an RFC 3339 time"));
    assert!(env
        .run(&[
            "queue",
            "pause",
            "THUMBS",
            "--until",
            "2001-01-01T00:00:00Z"
        ])
        .await
        .fails()
        .contains("which has passed"));
    assert!(env
        .run(&["queue", "pause", "THUMBS", "--for", "0s"])
        .await
        .fails()
        .contains("--for must be longer than 0s"));
    let both = env
        .run(&[
            "queue",
            "pause",
            "THUMBS",
            "--for",
            "1h",
            "--until",
            "2030-01-02T03:04:05Z",
        ])
        .await;
    assert!(both.fails().contains("cannot be used with"), "{both:#?}");
    let j = env.run(&["queue", "info", "THUMBS", "--json"]).await.json();
    assert!(j["paused"].is_null(), "{j}");
}

/// Issue 31: `task cancel` of a waiting task saves it `terminated` naming
/// ajc, its user and host; a second cancel fails saying it had finished
/// and changes nothing; an unknown id fails naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_cancel() {
    let env = Env::new();
    let id = task_id(env.run(&["task", "add", "image:resize", "{}"]).await.ok());
    let out = env.run(&["task", "cancel", &id]).await;
    let text = out.ok();
    assert!(
        text.starts_with(&format!(
            "Cancelled Task {id}: it was waiting and will not run"
        )),
        "{text}"
    );
    assert!(text.contains("Status: terminated"), "{text}");
    let j = env.run(&["task", "view", &id, "--json"]).await.json();
    assert_eq!(j["state"], "terminated", "{j}");
    let last_err = j["last_err"].as_str().unwrap();
    assert!(last_err.starts_with("cancelled by ajc ("), "{last_err}");
    let again = env.run(&["task", "cancel", &id]).await;
    assert!(
        again.fails().contains(&format!(
            "task {id} had already finished (terminated): nothing was changed"
        )),
        "{again:#?}"
    );
    let j2 = env.run(&["task", "view", &id, "--json"]).await.json();
    assert_eq!(j2["last_err"], j["last_err"]);
    assert!(env
        .run(&["task", "cancel", "2Jk7X1vJ8nR0a4mZq3bW6yTgE5c"])
        .await
        .fails()
        .contains("task not found"));
    // --json prints the task as saved
    let id = task_id(env.run(&["task", "add", "image:resize", "{}"]).await.ok());
    let j = env.run(&["task", "cancel", &id, "--json"]).await.json();
    assert_eq!(j["state"], "terminated", "{j}");
}

/// The state events of a short-lived command reach watchers: `ajc`
/// flushes its connections before it exits (a cancel's notice, its last
/// message, was lost without a flush; events followed by a JetStream
/// request are sent by then anyway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commands_state_events_are_sent_before_it_exits() {
    use futures::StreamExt;
    let env = Env::new();
    env.run(&["task", "add", "warm:up", "{}"]).await.ok();
    let nc = env.nats().await;
    let mut events = nc.subscribe("CHORIA_AJ.E.task_state.>").await.unwrap();
    nc.flush().await.unwrap();
    for _ in 0..5 {
        let id = task_id(env.run(&["task", "add", "email:new", "{}"]).await.ok());
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap_or_else(|_| panic!("no state event for {id}"))
            .unwrap();
        assert_eq!(
            event.subject.as_str(),
            format!("CHORIA_AJ.E.task_state.{id}")
        );
        let id2 = task_id(env.run(&["task", "add", "email:new", "{}"]).await.ok());
        let out = env.run(&["task", "cancel", &id2]).await;
        out.ok();
        let new = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the enqueue's event")
            .unwrap();
        assert_eq!(
            new.subject.as_str(),
            format!("CHORIA_AJ.E.task_state.{id2}")
        );
        let cancelled = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the cancel's event")
            .unwrap();
        let e: Value = serde_json::from_slice(&cancelled.payload).unwrap();
        assert_eq!(e["state"], "terminated", "{e}");
    }
}

/// Issue 31: `task add --unique KEY` prints the existing task's id when
/// one holds the key (exit 0, nothing enqueued); bad keys are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_add_unique() {
    let env = Env::new();
    let id = task_id(
        env.run(&[
            "task",
            "add",
            "invoice:send",
            "{}",
            "--unique",
            "invoice-42",
        ])
        .await
        .ok(),
    );
    let again = env
        .run(&[
            "task",
            "add",
            "invoice:send",
            "{}",
            "--unique",
            "invoice-42",
        ])
        .await;
    assert_eq!(
        again.ok().trim(),
        format!("Existing task {id} (unique key invoice-42): not enqueued again")
    );
    // the type and payload as the key, for a period
    let first = env
        .run(&["task", "add", "report:daily", "{}", "--unique-for", "1h"])
        .await;
    let first = task_id(first.ok());
    let dup = env
        .run(&["task", "add", "report:daily", "{}", "--unique-for", "1h"])
        .await;
    assert!(
        dup.ok().contains(&format!("Existing task {first} ")),
        "{dup:#?}"
    );
    let bad = env
        .run(&["task", "add", "invoice:send", "{}", "--unique", "tenant:7"])
        .await;
    assert!(
        bad.fails().contains("unique key \"tenant:7\" has ':'"),
        "{bad:#?}"
    );
}

/// `task add --priority N` (0–9) stores the priority, which `task info`
/// shows (a default task shows none, as Go) and its JSON carries; a value
/// out of range or not a number is refused before anything connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_add_priority() {
    let env = Env::new();
    let id = task_id(
        env.run(&["task", "add", "urgent", "{}", "--priority", "7"])
            .await
            .ok(),
    );
    let text = env.run(&["task", "info", &id]).await;
    assert!(
        text.ok().lines().any(|l| l.trim() == "Priority: 7"),
        "{text:#?}"
    );
    let j = env.run(&["task", "info", &id, "--json"]).await.json();
    assert_eq!(j["priority"], 7, "{j}");
    let stored = env.client().await.load_task(&id).await.unwrap();
    assert_eq!(stored.priority, 7);
    // the default: no line, no key
    let plain = task_id(env.run(&["task", "add", "plain", "{}"]).await.ok());
    let text = env.run(&["task", "info", &plain]).await;
    assert!(!text.ok().contains("Priority"), "{text:#?}");
    let j = env.run(&["task", "info", &plain, "--json"]).await.json();
    assert!(j.get("priority").is_none(), "{j}");
    // out of range or not a number: refused at once, naming the range
    for bad in ["10", "-1", "300", "high"] {
        let out = env
            .run_without_server(&["task", "add", "urgent", "{}", "--priority", bad])
            .await;
        let err = out.fails();
        assert!(err.contains("--priority"), "{bad}: {out:#?}");
        assert!(err.contains("9 (runs first)"), "{bad}: {out:#?}");
        assert!(
            !err.contains("NATS context"),
            "{bad}: connected first: {out:#?}"
        );
    }
    let out = env
        .run_without_server(&["task", "add", "urgent", "{}", "--priority", "10"])
        .await;
    assert!(
        out.fails()
            .contains("task priority must be 0 (the default) to 9 (runs first) (got 10)"),
        "{out:#?}"
    );
    // nothing but the two tasks was enqueued
    let listed = env.run(&["task", "ls", "--json"]).await.json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

/// Issue 31: `task view` shows a running task's progress, and `task
/// cancel` of a running task says its worker stops the handler, whose
/// token then fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_view_shows_progress_and_cancel_stops_a_running_task() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let env = Env::new();
    let id = task_id(env.run(&["task", "add", "video:encode", "{}"]).await.ok());
    let client = env.client().await;
    let stopped = Arc::new(AtomicBool::new(false));
    let seen = stopped.clone();
    let router = asyncjobs::Router::new()
        .handle(
            "video:encode",
            move |ctx: asyncjobs::TaskContext, _t: asyncjobs::Task| {
                let seen = seen.clone();
                async move {
                    ctx.progress(40, "frame 400 of 1000").unwrap();
                    ctx.cancelled().await;
                    seen.store(true, Ordering::SeqCst);
                    asyncjobs::handler::to_output(&"stopped")
                }
            },
        )
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(client.worker(router).run(stop.clone()));
    let view = asyncjobs_tests::wait_for(Duration::from_secs(30), "the progress", || async {
        let out = env.run(&["task", "view", &id]).await;
        out.ok()
            .contains("Progress: 40% frame 400 of 1000 (at ")
            .then_some(out)
    })
    .await;
    assert!(view.ok().contains("Status: active"), "{view:#?}");
    let j = env.run(&["task", "view", &id, "--json"]).await.json();
    assert_eq!(j["progress"]["percent"], 40, "{j}");
    let out = env.run(&["task", "cancel", &id]).await;
    assert!(
        out.ok().starts_with(&format!(
            "Cancelled Task {id}: it was running: its worker stops the handler"
        )),
        "{out:#?}"
    );
    asyncjobs_tests::wait_for(Duration::from_secs(30), "the handler's token", || async {
        stopped.load(Ordering::SeqCst).then_some(())
    })
    .await;
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// Issue 30 item 4: `task add` into a queue no running worker serves, or
/// of a type no running worker of its queue handles, enqueues the task
/// (exit 0) and warns on stderr naming the queue, the type and what to
/// do; into a served queue it says nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_add_warns_when_no_running_worker_serves_the_task() {
    let env = Env::new();
    let lonely = env.run(&["task", "add", "image:resize", "{}"]).await;
    assert!(lonely.ok().starts_with("Enqueued task "), "{lonely:#?}");
    assert!(
        lonely
            .stderr
            .contains("ajc: warning: no running worker serves queue DEFAULT")
            && lonely
                .stderr
                .contains("start one with a handler for its type on queue DEFAULT"),
        "{lonely:#?}"
    );

    let client = asyncjobs::Client::builder()
        .url(env.server.url())
        .queue(Queue::new("SERVED"))
        .build()
        .await
        .unwrap();
    let router = asyncjobs::Router::new()
        .handle(
            "image:resize",
            |_ctx: asyncjobs::TaskContext, _t: asyncjobs::Task| async move {
                asyncjobs::handler::to_output(&())
            },
        )
        .unwrap();
    let worker = asyncjobs_tests::spawn_worker(client.worker(router));
    wait_for(
        Duration::from_secs(20),
        "the worker to announce itself",
        || async { (!client.workers().await.unwrap().is_empty()).then_some(()) },
    )
    .await;
    let served = env
        .run(&["task", "add", "-q", "SERVED", "image:resize", "{}"])
        .await;
    served.ok();
    assert!(!served.stderr.contains("warning"), "{served:#?}");
    let stray = env
        .run(&["task", "add", "-q", "SERVED", "email:new", "{}"])
        .await;
    stray.ok();
    assert!(
        stray.stderr.contains(
            "no running worker handles task type email:new on queue SERVED (its workers handle image:resize)"
        ) && stray
            .stderr
            .contains("start a worker with a handler for email:new on queue SERVED"),
        "{stray:#?}"
    );
    worker.stop().await;
}

/// Issue 31: a queue's own retention of finished tasks, set by `queue add`
/// and `queue configure --retention`, shown by `queue info` and `task
/// retention`; a bad one is refused before anything changes. `task
/// retention --enable` on a store made with per-message TTL says so.
#[tokio::test]
async fn queue_retention() {
    let env = Env::new();
    env.run(&["task", "initialize"]).await.ok();
    let added = env
        .run(&[
            "queue",
            "add",
            "THUMBS",
            "--retention",
            "complete=1h,failed=720h",
        ])
        .await;
    assert!(
        added
            .ok()
            .contains("Keep Finished: complete=1h0m0s,expired=720h0m0s,terminated=720h0m0s,unreachable=720h0m0s,queue_error=720h0m0s"),
        "{added:#?}"
    );
    let bad = env
        .run(&["queue", "configure", "THUMBS", "--retention", "complete=0s"])
        .await;
    assert!(bad.fails().contains("at least 1s"), "{bad:#?}");
    let bad = env
        .run(&["queue", "configure", "THUMBS", "--retention", "active=1h"])
        .await;
    assert!(bad.fails().contains("final states"), "{bad:#?}");
    let changed = env
        .run(&[
            "queue",
            "configure",
            "THUMBS",
            "--retention",
            "forever",
            "--json",
        ])
        .await;
    let v: serde_json::Value = serde_json::from_str(changed.ok()).unwrap();
    assert_eq!(
        v["retention"],
        "complete=forever,expired=forever,terminated=forever,unreachable=forever,queue_error=forever"
    );
    env.run(&["queue", "add", "PLAIN"]).await.ok();
    let shown = env.run(&["task", "retention"]).await;
    let out = shown.ok();
    assert!(
        out.contains("Finished tasks expire: the task store allows per-message TTL")
            && out.contains("Queue THUMBS: complete=forever")
            && out.contains("Queue PLAIN: each process's own (default complete=24h0m0s"),
        "{out}"
    );
    let enabled = env.run(&["task", "retention", "--enable"]).await;
    assert!(
        enabled
            .ok()
            .contains("Finished task records already expire by their retention"),
        "{enabled:#?}"
    );
}

/// A queue's flow settings (docs/processing.md §2.21 to §2.23): `queue
/// add` sets all four, `queue info` shows each only when set (a queue
/// without them keeps Go's block), `queue configure` changes them and
/// removes them (`none`, aging `strict`); a bad value is refused before
/// anything connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_flow_settings() {
    let env = Env::new();
    // refused at once, naming the flag and why
    for (args, says) in [
        (&["--rate-limit", "0/s"][..], "starts per period must be 1"),
        (&["--rate-limit", "fast"][..], "expected STARTS/PERIOD"),
        (&["--rate-limit", "none"][..], "invalid rate limit"),
        (
            &["--key-rate-limit", "10/48h"][..],
            "period must be 1ms to 24h",
        ),
        (&["--key-rate-limit", "5/s,bust=2"][..], "expected burst=N"),
        (&["--priority-aging", "10ms"][..], "at least 1s (or strict)"),
        (&["--priority-aging", "soon"][..], "invalid priority aging"),
        (
            &["--key-concurrency", "0"][..],
            "must be 1 to 10000 (got 0)",
        ),
        (&["--key-concurrency", "10001"][..], "(got 10001)"),
        (&["--key-concurrency", "-1"][..], "(got -1)"),
        (
            &["--key-concurrency", "many"][..],
            "whole number from 1 to 10000",
        ),
        (&["--key-concurrency", "none"][..], "whole number"),
    ] {
        let mut cmd = vec!["queue", "add", "FLOW"];
        cmd.extend_from_slice(args);
        let out = env.run_without_server(&cmd).await;
        let err = out.fails();
        assert!(err.contains(args[0]), "{args:?}: {out:#?}");
        assert!(err.contains(says), "{args:?}: {out:#?}");
        assert!(
            !err.contains("NATS context"),
            "{args:?}: connected first: {out:#?}"
        );
        // configure takes the same values (and none)
        if args[1] != "none" {
            let mut cmd = vec!["queue", "configure", "FLOW"];
            cmd.extend_from_slice(args);
            let out = env.run_without_server(&cmd).await;
            let err = out.fails();
            assert!(err.contains(says), "configure {args:?}: {out:#?}");
            assert!(!err.contains("NATS context"), "{args:?}: {out:#?}");
        }
    }
    assert!(env.client().await.queue_info("FLOW").await.is_err());

    let add = env
        .run(&[
            "queue",
            "add",
            "FLOW",
            "--rate-limit",
            "10/s",
            "--priority-aging",
            "30s",
            "--key-concurrency",
            "5",
            "--key-rate-limit",
            "2/1m,burst=3",
        ])
        .await;
    expect("queue_info_flow.txt", add.ok());
    expect(
        "queue_info_flow.txt",
        env.run(&["q", "i", "FLOW"]).await.ok(),
    );
    let j = env.run(&["queue", "info", "FLOW", "--json"]).await.json();
    assert_eq!(j["rate_limit"], "10/s", "{j}");
    assert_eq!(j["priority_aging"], 30_000_000_000u64, "{j}");
    assert_eq!(j["key_concurrency"], 5, "{j}");
    assert_eq!(j["key_rate_limit"], "2/1m,burst=3", "{j}");
    let q = env.client().await.queue_info("FLOW").await.unwrap().queue;
    assert_eq!(q.rate_limit, Some("10/s".parse().unwrap()));
    assert_eq!(q.priority_aging, Some(Duration::from_secs(30)));
    assert_eq!(q.key_concurrency, Some(5));
    assert_eq!(q.key_rate_limit, Some("2/1m,burst=3".parse().unwrap()));

    // strict aging is the default: no setting, no line
    let strict = env
        .run(&["queue", "add", "STRICT", "--priority-aging", "strict"])
        .await;
    assert!(!strict.ok().contains("Priority Aging"), "{strict:#?}");
    let j = env.run(&["queue", "info", "STRICT", "--json"]).await.json();
    for k in [
        "rate_limit",
        "priority_aging",
        "key_concurrency",
        "key_rate_limit",
    ] {
        assert!(j[k].is_null(), "{k}: {j}");
    }

    // configure changes some, leaves the others
    let j = env
        .run(&[
            "queue",
            "configure",
            "FLOW",
            "--rate-limit",
            "600/1m",
            "--key-concurrency",
            "2",
            "--json",
        ])
        .await
        .json();
    assert_eq!(j["rate_limit"], "600/1m", "{j}");
    assert_eq!(j["key_concurrency"], 2, "{j}");
    assert_eq!(j["priority_aging"], 30_000_000_000u64, "{j}");
    assert_eq!(j["key_rate_limit"], "2/1m,burst=3", "{j}");
    let text = env
        .run(&["queue", "configure", "FLOW", "--priority-aging", "1m"])
        .await;
    let text = text.ok();
    for line in [
        "Rate Limit: 600/1m",
        "Priority Aging: 1m0s",
        "Key Concurrency: 2",
        "Key Rate Limit: 2/1m,burst=3",
    ] {
        assert!(text.lines().any(|l| l.trim() == line), "{line}: {text}");
    }
    // a bad value changes nothing
    env.run(&["queue", "configure", "FLOW", "--rate-limit", "0/s"])
        .await
        .fails();
    let q = env.client().await.queue_info("FLOW").await.unwrap().queue;
    assert_eq!(q.rate_limit, Some("600/1m".parse().unwrap()));

    // none (aging: strict) removes each; the block is Go's again
    let removed = env
        .run(&[
            "queue",
            "configure",
            "FLOW",
            "--rate-limit",
            "none",
            "--priority-aging",
            "strict",
            "--key-concurrency",
            "none",
            "--key-rate-limit",
            "none",
        ])
        .await;
    let text = removed.ok();
    for label in [
        "Rate Limit",
        "Priority Aging",
        "Key Concurrency",
        "Key Rate Limit",
    ] {
        assert!(!text.contains(label), "{label}: {text}");
    }
    let q = env.client().await.queue_info("FLOW").await.unwrap().queue;
    assert_eq!(
        (
            q.rate_limit,
            q.priority_aging,
            q.key_concurrency,
            q.key_rate_limit
        ),
        (None, None, None, None)
    );
    let j = env.run(&["queue", "info", "FLOW", "--json"]).await.json();
    for k in [
        "rate_limit",
        "priority_aging",
        "key_concurrency",
        "key_rate_limit",
    ] {
        assert!(j[k].is_null(), "{k}: {j}");
    }
}

/// `task add --key K` stores the task's flow-control key, which `task
/// info` shows (a task without one shows none, as Go) and its JSON
/// carries; an empty key, one over 128 bytes or with a control character
/// is refused before anything connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_add_key() {
    let env = Env::new();
    let id = task_id(
        env.run(&["task", "add", "invoice", "{}", "--key", "customer-42"])
            .await
            .ok(),
    );
    let text = env.run(&["task", "info", &id]).await;
    assert!(
        text.ok().lines().any(|l| l.trim() == "Key: customer-42"),
        "{text:#?}"
    );
    let j = env.run(&["task", "info", &id, "--json"]).await.json();
    assert_eq!(j["key"], "customer-42", "{j}");
    let stored = env.client().await.load_task(&id).await.unwrap();
    assert_eq!(stored.key.as_deref(), Some("customer-42"));
    // none: no line, no key
    let plain = task_id(env.run(&["task", "add", "plain", "{}"]).await.ok());
    let text = env.run(&["task", "info", &plain]).await;
    assert!(
        !text.ok().lines().any(|l| l.trim().starts_with("Key:")),
        "{text:#?}"
    );
    let j = env.run(&["task", "info", &plain, "--json"]).await.json();
    assert!(j.get("key").is_none(), "{j}");
    let long = "k".repeat(129);
    for bad in ["", long.as_str(), "a\tb", "line\nbreak"] {
        let out = env
            .run_without_server(&["task", "add", "invoice", "{}", "--key", bad])
            .await;
        let err = out.fails();
        assert!(err.contains("--key"), "{bad:?}: {out:#?}");
        assert!(
            err.contains("1 to 128 bytes without control characters"),
            "{bad:?}: {out:#?}"
        );
        assert!(
            !err.contains("NATS context"),
            "{bad:?}: connected first: {out:#?}"
        );
    }
    // 128 bytes is the most
    let edge = "k".repeat(128);
    env.run(&["task", "add", "invoice", "{}", "--key", &edge])
        .await
        .ok();
    let listed = env.run(&["task", "ls", "--json"]).await.json();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
}

/// `ajc batch add|info|cancel|retry` (docs/processing.md §2.23): members
/// from `--task TYPE=PAYLOAD` or a JSON-lines file, a callback; the
/// status in text and JSON; a member's view names its batch; cancel and
/// retry as a whole; clear errors for no members, too many and an unknown
/// batch.
#[tokio::test]
async fn batch_commands() {
    let env = Env::new();
    let out = env
        .run(&[
            "batch",
            "add",
            "--task",
            "page:render=1",
            "--task",
            r#"page:render={"page":2}"#,
            "--callback",
            "pdf:bind=report.pdf",
        ])
        .await;
    let text = out.ok().trim().to_string();
    let rest = text
        .strip_prefix("Enqueued batch ")
        .unwrap_or_else(|| panic!("{text}"));
    let (id, rest) = rest.split_once(' ').unwrap();
    assert!(
        rest.starts_with("of 2 tasks into queue DEFAULT; callback "),
        "{text}"
    );
    let callback = rest.rsplit(' ').next().unwrap().to_string();

    let info = env.run(&["batch", "info", id]).await;
    let info = info.ok();
    for want in [
        "Members: 2",
        "Pending: 2",
        "Done: 0",
        &format!("Callback: {callback} pdf:bind blocked"),
        "Finished: no",
    ] {
        assert!(info.contains(want), "{want:?} in {info}");
    }
    let j = env.run(&["batch", "info", id, "--json"]).await.json();
    assert_eq!(j["total"], 2, "{j}");
    assert_eq!(j["callback"]["state"], "blocked", "{j}");
    let member = j["members"][1]["id"].as_str().unwrap().to_string();
    assert_eq!(j["members"][1]["type"], "page:render");
    let m = env.run(&["task", "view", &member, "--json"]).await.json();
    assert_eq!(m["batch"], id, "{m}");
    assert_eq!(payload_of(&m), br#"{"page":2}"#);
    let view = env.run(&["task", "view", &callback]).await;
    assert!(
        view.ok().contains(&format!("Batch: {id} (its callback)")),
        "{view:#?}"
    );

    let out = env.run(&["batch", "cancel", id]).await;
    assert!(
        out.ok().starts_with(&format!(
            "Cancelled batch {id}: 3 tasks cancelled, 0 had already ended"
        )),
        "{out:#?}"
    );
    let j = env.run(&["batch", "info", id, "--json"]).await.json();
    assert_eq!(
        (&j["failed"], &j["finished"]),
        (&2.into(), &true.into()),
        "{j}"
    );
    let j = env.run(&["batch", "retry", id, "--json"]).await.json();
    assert_eq!(j["retried"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["callback"], "rearmed", "{j}");
    let out = env.run(&["batch", "retry", id]).await;
    assert!(
        out.ok().starts_with(&format!(
            "Retried batch {id}: 0 members retried; callback waiting for the members"
        )),
        "{out:#?}"
    );

    // members from a JSON-lines file, as JSON
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("members.jsonl");
    std::fs::write(
        &file,
        "{\"type\":\"page:render\",\"payload\":{\"page\":1}}\n\n{\"type\":\"page:render\",\"max_tries\":2}\n",
    )
    .unwrap();
    let j = env
        .run(&["batch", "add", "--file", file.to_str().unwrap(), "--json"])
        .await
        .json();
    assert_eq!(j["members"].as_array().unwrap().len(), 2, "{j}");
    assert!(j.get("callback").is_none(), "{j}");

    // clear errors
    let e = env.run(&["batch", "add"]).await;
    assert!(e.fails().contains("a batch needs members"), "{e:#?}");
    let many: String = (0..1001)
        .map(|n| format!("{{\"type\":\"t\",\"payload\":{n}}}\n"))
        .collect();
    std::fs::write(&file, many).unwrap();
    let e = env
        .run(&["batch", "add", "--file", file.to_str().unwrap()])
        .await;
    assert!(
        e.fails()
            .contains("a batch holds at most 1000 members (got 1001)"),
        "{e:#?}"
    );
    std::fs::write(&file, "{\"typ\":\"t\"}\n").unwrap();
    let e = env
        .run(&["batch", "add", "--file", file.to_str().unwrap()])
        .await;
    assert!(
        e.fails().contains("members.jsonl line 1: not a member"),
        "{e:#?}"
    );
    let e = env
        .run(&["batch", "info", "2Jk7X1vJ8nR0a4mZq3bW6yTgE5c"])
        .await;
    assert!(
        e.fails()
            .contains("batch not found: 2Jk7X1vJ8nR0a4mZq3bW6yTgE5c"),
        "{e:#?}"
    );
}
