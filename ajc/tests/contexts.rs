//! `ajc` with NATS contexts that select another JetStream or set keys it
//! cannot honour (docs/interfaces.md §4): the built binary,
//! its config directory pointed at a temporary one.

use asyncjobs_tests::HubAndLeaf;
use std::path::Path;
use std::process::Stdio;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ajc");

/// Writes the context `name` into `config`'s `nats/context`.
fn write_context(config: &Path, name: &str, body: serde_json::Value) {
    let dir = config.join("nats").join("context");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.json")), body.to_string()).unwrap();
}

/// `ajc --context <context> ARGS` with only `config` as its config dir:
/// exit code, stdout, stderr.
async fn ajc(config: &Path, context: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    for var in ["CONTEXT", "NATS_URL", "AJC_DEBUG", "AJC_QUEUE", "RUST_LOG"] {
        c.env_remove(var);
    }
    let o = c
        .env("XDG_CONFIG_HOME", config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .arg("--context")
        .arg(context)
        .args(args)
        .output()
        .await
        .expect("running ajc");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn stream_messages(nc: &async_nats::Client, stream: &str) -> Option<u64> {
    let mut s = async_nats::jetstream::new(nc.clone())
        .get_stream(stream)
        .await
        .ok()?;
    Some(s.info().await.ok()?.state.messages)
}

#[tokio::test]
async fn ajc_honours_the_contexts_jetstream_domain() {
    let servers = HubAndLeaf::start().await;
    let config = tempfile::tempdir().unwrap();
    write_context(
        config.path(),
        "viahub",
        serde_json::json!({"url": servers.leaf.url(), "jetstream_domain": "hub", "jetstream_api_prefix": ""}),
    );
    let (code, out, err) = ajc(config.path(), "viahub", &["queue", "add", "HUBQ"]).await;
    assert_eq!(code, 0, "queue add: {out}\n{err}");
    let (code, out, err) = ajc(
        config.path(),
        "viahub",
        &["task", "add", "-q", "HUBQ", "hub:job", "{}"],
    )
    .await;
    assert_eq!(code, 0, "task add: {out}\n{err}");

    let hub = async_nats::connect(servers.hub.url()).await.unwrap();
    let leaf = async_nats::connect(servers.leaf.url()).await.unwrap();
    assert_eq!(stream_messages(&hub, "CHORIA_AJ_Q_HUBQ").await, Some(1));
    assert_eq!(stream_messages(&hub, "CHORIA_AJ_TASKS").await, Some(1));
    assert_eq!(stream_messages(&leaf, "CHORIA_AJ_TASKS").await, None);
    assert_eq!(stream_messages(&leaf, "CHORIA_AJ_Q_HUBQ").await, None);

    // reads go to the hub too
    let (code, out, err) = ajc(config.path(), "viahub", &["queue", "ls", "--json"]).await;
    assert_eq!(code, 0, "queue ls: {out}\n{err}");
    assert!(out.contains("HUBQ"), "{out}");
}

#[tokio::test]
async fn ajc_refuses_a_context_key_it_cannot_honour_naming_it() {
    let config = tempfile::tempdir().unwrap();
    write_context(
        config.path(),
        "proxied",
        serde_json::json!({"url": "nats://127.0.0.1:1", "socks_proxy": "socks5://127.0.0.1:1080"}),
    );
    let (code, out, err) = ajc(config.path(), "proxied", &["queue", "ls"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("socks_proxy is set: connecting through a SOCKS proxy is not supported"),
        "{err}"
    );
    assert!(err.contains("proxied"), "names the context: {err}");
    write_context(
        config.path(),
        "newer",
        serde_json::json!({"url": "nats://127.0.0.1:1", "some_future_key": "x"}),
    );
    let (code, _, err) = ajc(config.path(), "newer", &["queue", "ls"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unknown key \"some_future_key\" is set"),
        "{err}"
    );
}
