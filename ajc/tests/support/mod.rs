//! Shared by the tests of `ajc`: golden files, starting `ajc server run`,
//! an HTTP client.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_ajc");
pub const T: Duration = Duration::from_secs(20);

/// A running `ajc server run`.
pub struct ApiServer {
    pub child: Child,
    /// `http://127.0.0.1:PORT` or `https://localhost:PORT`.
    pub base: String,
    pub log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl ApiServer {
    /// Starts `ajc --server <nats> server run --bind 127.0.0.1:0 <args>`
    /// and waits for its listening line.
    pub async fn start(nats: &str, args: &[&str]) -> ApiServer {
        let mut child = Command::new(BIN)
            .args(["--server", nats, "server", "run", "--bind", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting ajc");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = tokio::time::timeout(T, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return rest.split_whitespace().next().unwrap().to_string();
                }
                assert!(!line.contains("error"), "ajc server run: {line}");
            }
            panic!("ajc server run ended before listening")
        })
        .await
        .expect("ajc server run did not start listening");
        let (tx, log) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        ApiServer { child, base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(T).build().unwrap()
}

/// Compares with `tests/expected/<name>`, or writes it with `AJC_UPDATE_EXPECTED=1`.
pub fn expect(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expected")
        .join(name);
    if std::env::var_os("AJC_UPDATE_EXPECTED").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (AJC_UPDATE_EXPECTED=1 writes it)",
            path.display()
        )
    });
    assert_eq!(actual, want, "output differs from {}", path.display());
}
