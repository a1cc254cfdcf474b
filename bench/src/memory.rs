//! Memory: the RSS of a worker process, framework or raw, idle and while
//! it holds `--inflight` tasks.

use crate::harness::{cleanup, connect, tasks, wait_drained};
use crate::opts::Opts;
use crate::raw;
use crate::report::Results;
use asyncjobs::{Client, Router, Task, TaskContext};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The memory rows: idle and in-flight RSS of a framework worker beside a
/// raw one; returns the in-flight row's name (it holds `--inflight`).
pub async fn report(url: &str, opts: &Opts, res: &mut Results) -> String {
    let (idle, inflight) = measure(url, opts, false).await;
    let (ridle, rinflight) = measure(url, opts, true).await;
    res.add("worker RSS idle", vec![idle], vec![], vec![ridle], "MiB");
    let inflight_name = format!("worker RSS {} in flight", opts.inflight);
    res.add(
        &inflight_name,
        vec![inflight],
        vec![],
        vec![rinflight],
        "MiB",
    );
    inflight_name
}

/// The resident set of process `pid`, MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Idle and in-flight RSS of a worker process (framework or raw).
async fn measure(url: &str, opts: &Opts, raw: bool) -> (f64, f64) {
    let q = if raw { "BENCH_MEM_RAW" } else { "BENCH_MEM" };
    let client = connect(url, q, opts).await;
    let mut sub = client
        .nats()
        .subscribe(format!("bench.started.{q}"))
        .await
        .unwrap();
    client.nats().flush().await.unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--child-worker",
            &format!(
                "{}|{q}|{}|{}",
                if raw { "raw" } else { "fw" },
                opts.inflight,
                url
            ),
        ])
        .spawn()
        .unwrap();
    // ready when it answers
    futures::StreamExt::next(&mut sub).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_mib(child.id());
    let mut ts = tasks(opts.inflight);
    for r in client.enqueue_many(&mut ts).await {
        r.unwrap();
    }
    let nc = client.nats().clone();
    loop {
        let info = client.queue_info(q).await.unwrap();
        if info.ack_pending as usize >= opts.inflight {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let inflight = rss_mib(child.id());
    nc.publish(format!("bench.release.{q}"), "".into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    wait_drained(&client, q, opts.inflight).await;
    let _ = child.kill();
    let _ = child.wait();
    cleanup(&client, q).await;
    (idle, inflight)
}

/// `--child-worker KIND|QUEUE|INFLIGHT|URL`: the worker process
/// [`measure`] starts; it holds `INFLIGHT` tasks until released.
/// `--child-worker procs|…` is a worker process of [`crate::workers`].
pub fn child_worker(spec: &str) {
    if let Some(spec) = spec.strip_prefix("procs|") {
        return crate::workers::child(spec);
    }
    let mut parts = spec.splitn(4, '|');
    let (kind, q, inflight, url) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
        parts.next().unwrap().parse::<usize>().unwrap(),
        parts.next().unwrap().to_string(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let nc = async_nats::connect(&url).await.unwrap();
        let release = Arc::new(tokio::sync::Notify::new());
        let mut sub = nc.subscribe(format!("bench.release.{q}")).await.unwrap();
        let r = release.clone();
        tokio::spawn(async move {
            futures::StreamExt::next(&mut sub).await;
            r.notify_waiters();
        });
        nc.publish(format!("bench.started.{q}"), "".into())
            .await
            .unwrap();
        nc.flush().await.unwrap();
        if kind == "raw" {
            raw::hold_inflight(nc, &q, inflight, release).await;
        } else if kind == "rate" {
            // the flow measurement's workers: no-op tasks until killed
            let client = Client::builder()
                .nats_client(nc)
                .bind_queue(q)
                .build()
                .await
                .unwrap();
            let router = Router::new()
                .handle("bench", |_ctx: TaskContext, _t: Task| async {
                    asyncjobs::handler::to_output(&())
                })
                .unwrap();
            client
                .worker(router)
                .concurrency(inflight)
                .run(CancellationToken::new())
                .await
                .unwrap();
        } else {
            let client = Client::builder()
                .nats_client(nc)
                .bind_queue(q)
                .build()
                .await
                .unwrap();
            let router = Router::new()
                .handle("bench", move |_ctx: TaskContext, _t: Task| {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        asyncjobs::handler::to_output(&())
                    }
                })
                .unwrap();
            client
                .worker(router)
                .concurrency(inflight)
                .run(CancellationToken::new())
                .await
                .unwrap();
        }
    });
}
