//! asyncjobs benchmark: the framework beside raw async-nats doing the same
//! JetStream operations, in the same run.
//!
//! `cargo run --release -p asyncjobs-bench -- --help`
//!
//! [`run`] is the order of the report: the paired comparison ([`compare`]:
//! the rates, CPU and latency of [`framework`], [`best`] and [`raw`]), then
//! [`scaling`], then [`flow`] (with `--flow`), then [`workers`] (with
//! `--worker-procs`: worker processes), then [`features`] (with
//! `--features`: the cost of each feature), then [`memory`], then the
//! `--json` summary ([`report`]).

mod best;
mod compare;
mod cpu;
mod dashboard;
mod features;
mod flow;
mod framework;
mod harness;
mod memory;
mod opts;
mod raw;
mod report;
mod scaling;
mod server;
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
    let (server, url) = start_server(&opts);
    eprintln!(
        "asyncjobs benchmark: {} tasks x {} reps, {} storage, server {url}",
        opts.tasks,
        opts.reps,
        if opts.memory { "memory" } else { "file" }
    );
    if opts.only.as_deref() == Some("flow") {
        let mut extra = serde_json::Map::new();
        flow::report(&url, &opts, opts.reps.max(1), &mut extra).await;
        if opts.json {
            println!("{}", serde_json::Value::Object(extra));
        }
        return;
    }
    if let Some(only @ ("workers" | "features")) = opts.only.as_deref() {
        let mut extra = serde_json::Map::new();
        if only == "workers" {
            workers::report(&url, &opts, opts.reps.max(1), &mut extra).await;
        } else {
            features::report(&url, &opts, opts.reps.max(1), &mut extra).await;
        }
        if opts.json {
            println!("{}", serde_json::Value::Object(extra));
        }
        return;
    }
    if opts.only.as_deref() == Some("dashboard") {
        let mut extra = serde_json::Map::new();
        dashboard::report(&url, &opts, &mut extra).await;
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
    let mut res = Results::default();
    let reps = opts.reps.max(1);
    compare::run(&url, &opts, reps, &mut res).await;
    let mut extra = serde_json::Map::new();
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
    if opts.json {
        let summary = report::json_summary(&res, extra, &opts, reps, &inflight_name);
        println!("{summary}");
    }
    drop(server);
}
