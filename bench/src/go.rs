//! The Go implementation's column (`--go BIN`): the program the user
//! passes is run once per measurement, in the same repetition as the
//! framework's, against the same server.
//!
//! Its interface: `BIN --url URL --queue NAME --tasks N --mode
//! enqueue-seq|process|e2e [--concurrency C] [--replicas R]`, printing one
//! JSON line on stdout (`{"mode":..,"tasks":N,"concurrency":C,"seconds":S,
//! "rate":R,"cpu_us_per_task":X}`) and exiting non-zero on failure. The
//! rate and the client CPU per task are the program's own figures (its
//! timed section); the server's CPU is not taken for Go (the program's
//! run holds more than its timed section). Enqueue sequential, process
//! c10 and c100, and enqueue+process (concurrency 100) are measured; Go
//! has no batch enqueue row. A failed run is reported and counts as a
//! missing sample (NaN) of its repetition.
//!
//! The program deletes its task store and queue at exit; [`cleanup`]
//! deletes them again when left, and deletes a task store that does not
//! allow direct gets (as Go creates it), so the next framework and best
//! raw measurements start with the store the framework creates.

use async_nats::jetstream;
use serde::Deserialize;
use std::path::Path;
use std::process::Stdio;

/// What Go measures.
#[derive(Clone, Copy)]
pub enum Mode {
    EnqueueSeq,
    Process(usize),
    EndToEnd,
}

/// One run's figures.
#[derive(Deserialize)]
pub struct GoRun {
    pub tasks: usize,
    pub rate: f64,
    pub cpu_us_per_task: f64,
}

/// Runs `bin` for `tasks` tasks in queue `queue` (with `replicas` when
/// above 1), then [`cleanup`]; `None`, printed, when it fails.
pub async fn run(
    bin: &Path,
    url: &str,
    queue: &str,
    tasks: usize,
    mode: Mode,
    replicas: usize,
) -> Option<GoRun> {
    let (name, concurrency) = match mode {
        Mode::EnqueueSeq => ("enqueue-seq", None),
        Mode::Process(c) => ("process", Some(c)),
        Mode::EndToEnd => ("e2e", Some(100)),
    };
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["--url", url, "--queue", queue, "--mode", name])
        .args(["--tasks", &tasks.to_string()]);
    if let Some(c) = concurrency {
        cmd.args(["--concurrency", &c.to_string()]);
    }
    if replicas > 1 {
        cmd.args(["--replicas", &replicas.to_string()]);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = cmd.output().await;
    cleanup(url, queue).await;
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("go {name} {queue}: {}: {e}", bin.display());
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str::<GoRun>(l.trim()));
    match (out.status.success(), parsed) {
        (true, Some(Ok(run))) if run.tasks == tasks && run.rate > 0.0 => Some(run),
        (ok, parsed) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            eprintln!(
                "go {name} {queue} failed ({}, {}): {}",
                out.status,
                match (ok, parsed) {
                    (_, None) => "no JSON line".to_string(),
                    (_, Some(Err(e))) => format!("bad JSON line: {e}"),
                    (_, Some(Ok(r))) => format!("{} tasks, rate {}", r.tasks, r.rate),
                },
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            );
            None
        }
    }
}

/// Deletes the queue's stream when the program left it, and the task
/// store when it does not allow direct gets (Go's); purges it otherwise.
pub async fn cleanup(url: &str, queue: &str) {
    let Ok(nc) = async_nats::connect(url).await else {
        return;
    };
    let js = jetstream::new(nc);
    let _ = js
        .delete_stream(asyncjobs::Queue::new(queue).stream_name())
        .await;
    if let Ok(store) = js.get_stream("CHORIA_AJ_TASKS").await {
        if store.cached_info().config.allow_direct {
            let _ = store.purge().await;
        } else {
            let _ = js.delete_stream("CHORIA_AJ_TASKS").await;
        }
    }
}
