//! The paired comparison: every rate measurement on the three sides (the
//! framework, the best raw client, the raw client with the framework's
//! structure) one after another in each repetition, with the client and
//! server CPU of the processing ones, then the latency of the framework
//! and the raw client; and `--only`, one of them repeated for a profiler.

use crate::opts::Opts;
use crate::report::Results;
use crate::{best, cpu, framework, raw};

/// Who does the work.
#[derive(Clone, Copy)]
enum Side {
    Framework,
    Best,
    Raw,
}

/// The sides in the order each repetition measures them (and the columns
/// of a row).
const SIDES: [Side; 3] = [Side::Framework, Side::Best, Side::Raw];

/// A measurement in tasks/s.
#[derive(Clone, Copy)]
enum Rate {
    /// Enqueue one task after another.
    EnqueueSeq,
    /// Enqueue in a batch (pipelined).
    EnqueueBatch,
    /// Process queued tasks at this concurrency.
    Process(usize),
    /// Enqueue and process at once.
    EndToEnd,
}

impl Rate {
    /// Processing measurements leave a CPU span to take.
    fn has_cpu_span(self) -> bool {
        matches!(self, Rate::Process(_) | Rate::EndToEnd)
    }
}

/// The rate rows, in the order measured and printed.
const RATES: [(&str, Rate); 5] = [
    ("enqueue (sequential)", Rate::EnqueueSeq),
    ("enqueue (batch/pipelined)", Rate::EnqueueBatch),
    ("process c10", Rate::Process(10)),
    ("process c100", Rate::Process(100)),
    ("enqueue+process", Rate::EndToEnd),
];

/// One measurement of one side, in tasks/s.
async fn rate(side: Side, m: Rate, url: &str, opts: &Opts, rep: usize) -> f64 {
    match (side, m) {
        (Side::Framework, Rate::EnqueueSeq) => framework::enqueue_seq(url, opts, rep).await,
        (Side::Best, Rate::EnqueueSeq) => best::enqueue_seq(url, opts, rep).await,
        (Side::Raw, Rate::EnqueueSeq) => raw::enqueue_seq(url, opts, rep).await,
        (Side::Framework, Rate::EnqueueBatch) => framework::enqueue_batch(url, opts, rep).await,
        (Side::Best, Rate::EnqueueBatch) => best::enqueue_pipelined(url, opts, rep).await,
        (Side::Raw, Rate::EnqueueBatch) => raw::enqueue_pipelined(url, opts, rep).await,
        (Side::Framework, Rate::Process(c)) => framework::process(url, opts, rep, c).await,
        (Side::Best, Rate::Process(c)) => best::process(url, opts, rep, c).await,
        (Side::Raw, Rate::Process(c)) => raw::process(url, opts, rep, c).await,
        (Side::Framework, Rate::EndToEnd) => framework::e2e(url, opts, rep).await,
        (Side::Best, Rate::EndToEnd) => best::e2e(url, opts, rep).await,
        (Side::Raw, Rate::EndToEnd) => raw::e2e(url, opts, rep).await,
    }
}

/// The measurements `--only` accepts.
fn only_measurement(name: &str) -> Option<(Side, Rate)> {
    Some(match name {
        "fw-enqueue-batch" => (Side::Framework, Rate::EnqueueBatch),
        "best-enqueue-batch" => (Side::Best, Rate::EnqueueBatch),
        "fw-c10" => (Side::Framework, Rate::Process(10)),
        "fw-c100" => (Side::Framework, Rate::Process(100)),
        "fw-e2e" => (Side::Framework, Rate::EndToEnd),
        "best-c10" => (Side::Best, Rate::Process(10)),
        "best-c100" => (Side::Best, Rate::Process(100)),
        "best-e2e" => (Side::Best, Rate::EndToEnd),
        _ => return None,
    })
}

/// `--only NAME`: one measurement `--reps` times, each printed with its
/// client and server CPU per task.
pub async fn only(url: &str, opts: &Opts, only: &str) {
    let Some((side, m)) = only_measurement(only) else {
        panic!("--only {only}: not a measurement");
    };
    for rep in 0..opts.reps.max(1) {
        let rate = rate(side, m, url, opts, rep).await;
        let (client, server) = cpu::take();
        eprintln!(
            "{only}: {rate:.0} tasks/s, client CPU {client:.0} µs/task, server CPU {:.0} µs/task",
            server.unwrap_or(0.0)
        );
    }
}

/// Every repetition's samples.
#[derive(Default)]
struct Samples {
    /// Per repetition, per [`RATES`] entry: tasks/s of each side.
    rates: Vec<Vec<[f64; 3]>>,
    /// Per repetition, per processing entry of [`RATES`]: each side's CPU
    /// span.
    spans: Vec<Vec<[cpu::PerTask; 3]>>,
    /// Per repetition: framework p50, raw p50, framework p99, raw p99.
    latencies: Vec<[f64; 4]>,
}

/// One repetition: every rate on every side, then the latencies.
async fn repetition(url: &str, opts: &Opts, rep: usize, samples: &mut Samples) {
    let mut rates = Vec::new();
    let mut spans = Vec::new();
    for (_, m) in RATES {
        let mut row = [0.0; 3];
        let mut span = [(0.0, None); 3];
        for (i, side) in SIDES.into_iter().enumerate() {
            row[i] = rate(side, m, url, opts, rep).await;
            if m.has_cpu_span() {
                span[i] = cpu::take();
            }
        }
        rates.push(row);
        if m.has_cpu_span() {
            spans.push(span);
        }
    }
    samples.rates.push(rates);
    samples.spans.push(spans);
    let (p50, p99) = framework::latency(url, opts, rep).await;
    let (rp50, rp99) = raw::latency(url, opts, rep).await;
    samples.latencies.push([p50, rp50, p99, rp99]);
}

/// Measures `reps` repetitions and adds their rows: rates, client and
/// server CPU of the processing rates, latency.
pub async fn run(url: &str, opts: &Opts, reps: usize, res: &mut Results) {
    let mut samples = Samples::default();
    for rep in 0..reps {
        repetition(url, opts, rep, &mut samples).await;
    }
    let Samples {
        rates,
        spans,
        latencies,
    } = samples;
    let col = |i: usize, side: usize| rates.iter().map(|r| r[i][side]).collect::<Vec<f64>>();
    for (i, (name, _)) in RATES.into_iter().enumerate() {
        res.add(name, col(i, 0), col(i, 1), col(i, 2), "tasks/s");
    }
    // CPU per task over the timed sections: this process (the client:
    // producer and worker) and nats-server
    let client_cpu =
        |k: usize, side: usize| spans.iter().map(|r| r[k][side].0).collect::<Vec<f64>>();
    let server_cpu = |k: usize, side: usize| {
        spans
            .iter()
            .filter_map(|r| r[k][side].1)
            .collect::<Vec<f64>>()
    };
    let processing = RATES.into_iter().filter(|(_, m)| m.has_cpu_span());
    for (k, (name, _)) in processing.enumerate() {
        res.add(
            &format!("{name} client CPU"),
            client_cpu(k, 0),
            client_cpu(k, 1),
            client_cpu(k, 2),
            "µs/task",
        );
        res.add(
            &format!("{name} server CPU"),
            server_cpu(k, 0),
            server_cpu(k, 1),
            server_cpu(k, 2),
            "µs/task",
        );
    }
    let lat = |i: usize| latencies.iter().map(|r| r[i]).collect::<Vec<f64>>();
    res.add("latency p50", lat(0), vec![], lat(1), "ms");
    res.add("latency p99", lat(2), vec![], lat(3), "ms");
}
