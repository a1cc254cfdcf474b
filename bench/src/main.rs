//! asyncjobs benchmark: the framework beside raw async-nats doing the same
//! JetStream operations, in the same run.
//!
//! `cargo run --release -p asyncjobs-bench -- --help`
//!
//! [`run`] is the order of the report: the paired comparison ([`compare`]:
//! the rates, CPU and latency of [`framework`], [`best`] and [`raw`], and
//! of the Go implementation's program with `--go`, [`go`]), then
//! [`sizes`] (with `--sizes`), then [`scaling`], then [`flow`] (with
//! `--flow`), then [`workers`] (with `--worker-procs`: worker processes),
//! then [`features`] (with `--features`: the cost of each feature), then
//! [`memory`], then [`cluster`] (with `--cluster`, on a 3-node cluster of
//! its own), then the `--json` summary ([`report`]).

mod best;
mod cluster;
mod compare;
mod cpu;
mod dashboard;
mod features;
mod flow;
mod framework;
mod go;
mod harness;
mod memory;
mod opts;
mod raw;
mod replicas;
mod report;
mod scaling;
mod server;
mod sizes;
mod workers;

use clap::Parser;
use opts::Opts;
use report::Results;

fn main() {
    let opts = Opts::parse();
    if let Some(spec) = &opts.child_worker {
        memory::child_worker(spec);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(opts));
}

/// The nats-server the benchmark starts (none with `--server`) and the URL
/// to use.
fn start_server(opts: &Opts) -> (Option<server::Server>, String) {
    let server = match &opts.server {
        Some(_) => None,
        None => Some(server::Server::start(opts.memory)),
    };
    if let Some(s) = &server {
        cpu::set_server_pid(s.pid());
    }
    let url = opts
        .server
        .clone()
        .unwrap_or_else(|| server.as_ref().unwrap().url());
    (server, url)
}

/// Every measurement `opts` asks for, printed as measured.
async fn run(opts: Opts) {
    framework::set_no_scheduled_waits(opts.no_scheduled_waits);
    if opts.only.as_deref() == Some("cluster") {
        // the cluster is started by the measurement: no single server
        let mut extra = serde_json::Map::new();
        cluster::report(&opts, &mut extra).await;
        if opts.json {
            println!("{}", serde_json::Value::Object(extra));
        }
        return;
    }
    let (server, url) = start_server(&opts);
    eprintln!(
        "asyncjobs benchmark: {} tasks x {} reps, {} storage, server {url}",
        opts.tasks,
        opts.reps,
        if opts.memory { "memory" } else { "file" }
    );
    if let Some(only @ ("flow" | "workers" | "features" | "dashboard" | "sizes")) =
        opts.only.as_deref()
    {
        // one section alone, its JSON the only line printed
        let mut extra = serde_json::Map::new();
        let reps = opts.reps.max(1);
        match only {
            "flow" => flow::report(&url, &opts, reps, &mut extra).await,
            "workers" => workers::report(&url, &opts, reps, &mut extra).await,
            "features" => features::report(&url, &opts, reps, &mut extra).await,
            "dashboard" => dashboard::report(&url, &opts, &mut extra).await,
            _ => sizes::report(&url, &opts, &mut extra).await,
        }
        if opts.json {
            println!("{}", serde_json::Value::Object(extra));
        }
        return;
    }
    if let Some(only) = &opts.only {
        compare::only(&url, &opts, only).await;
        return;
    }
    eprintln!("best raw client: {}", best::CONFIGURATION);
    eprintln!("raw as framework: the framework's structure (multi-thread runtime, a spawn per item, STREAM.MSG.GET loads)");
    if let Some(bin) = &opts.go {
        eprintln!(
            "go: {} (rate and client CPU are its own figures; no server CPU)",
            bin.display()
        );
    }
    let mut res = Results::default();
    let reps = opts.reps.max(1);
    compare::run(&url, &opts, reps, &mut res).await;
    let mut extra = serde_json::Map::new();
    if !opts.sizes.is_empty() {
        sizes::report(&url, &opts, &mut extra).await;
    }
    if opts.cpu_tasks > 0 {
        scaling::report_cpu_bound(&url, &opts, reps, &mut extra).await;
    }
    if opts.backlog > 0 {
        scaling::report_backlog(&url, &opts, &mut extra).await;
    }
    if opts.chain > 0 {
        scaling::report_chain(&url, &opts, &mut extra).await;
    }
    if opts.list_tasks > 0 {
        scaling::report_listing(&url, &opts, &mut extra).await;
    }
    if !opts.dashboard_tasks.is_empty() {
        dashboard::report(&url, &opts, &mut extra).await;
    }
    if opts.flow {
        flow::report(&url, &opts, reps, &mut extra).await;
    }
    if !opts.worker_procs.is_empty() {
        workers::report(&url, &opts, reps, &mut extra).await;
    }
    if opts.features {
        features::report(&url, &opts, reps, &mut extra).await;
    }
    let inflight_name = memory::report(&url, &opts, &mut res).await;
    if opts.cluster {
        cluster::report(&opts, &mut extra).await;
        if let Some(s) = &server {
            cpu::set_server_pid(s.pid());
        }
    }
    if opts.json {
        let summary = report::json_summary(&res, extra, &opts, reps, &inflight_name);
        println!("{summary}");
    }
    drop(server);
}
