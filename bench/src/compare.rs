//! The paired comparison: every rate measurement on the three sides (the
//! framework, the best raw client, the raw client with the framework's
//! structure; and with `--go` the Go implementation) one after another in
//! each repetition, with the client and server CPU of the processing
//! ones, then the latency of the framework and the raw client; the same
//! rates on the framework and the best raw client alone
//! ([`paired_rates`], for `--sizes` and `--cluster`); and `--only`, one of
//! them repeated for a profiler.

use crate::opts::Opts;
use crate::report::Results;
use crate::{best, cpu, framework, go, raw};

/// Who does the work.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Framework,
    Best,
    Raw,
    /// The Go implementation's program (`--go`).
    Go,
}

/// The sides in the order each repetition measures them: the framework,
/// the best raw client, the raw client with the framework's structure
/// when `structure`, and Go with `--go`.
fn sides(opts: &Opts, structure: bool) -> Vec<Side> {
    let mut sides = vec![Side::Framework, Side::Best];
    if structure {
        sides.push(Side::Raw);
    }
    if opts.go.is_some() {
        sides.push(Side::Go);
    }
    sides
}

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
        (Side::Go, _) => unreachable!("Go is measured by go_sample"),
    }
}

/// One sample: tasks/s and, for the processing rates, the CPU span.
type Sample = (f64, cpu::PerTask);

/// One measurement of one side (`None`: the side has no such measurement,
/// Go's batch enqueue); a failed Go run is a NaN sample.
async fn sample(side: Side, m: Rate, url: &str, opts: &Opts, rep: usize) -> Option<Sample> {
    if side == Side::Go {
        return go_sample(m, url, opts, rep).await;
    }
    let rate = rate(side, m, url, opts, rep).await;
    let span = if m.has_cpu_span() {
        cpu::take()
    } else {
        (0.0, None)
    };
    Some((rate, span))
}

/// Go's run of `m`: its rate and client CPU (no server CPU).
async fn go_sample(m: Rate, url: &str, opts: &Opts, rep: usize) -> Option<Sample> {
    let (mode, q) = match m {
        Rate::EnqueueSeq => (go::Mode::EnqueueSeq, format!("GO_ES_{rep}")),
        Rate::EnqueueBatch => return None,
        Rate::Process(c) => (go::Mode::Process(c), format!("GO_P{c}_{rep}")),
        Rate::EndToEnd => (go::Mode::EndToEnd, format!("GO_E2E_{rep}")),
    };
    let bin = opts.go.as_ref().expect("--go");
    let run = go::run(bin, url, &q, opts.tasks, mode, crate::replicas::get()).await;
    Some(match run {
        Some(r) => (r.rate, (r.cpu_us_per_task, None)),
        None => (f64::NAN, (f64::NAN, None)),
    })
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

/// Per [`RATES`] entry, per side: one repetition's samples.
type RateSamples = Vec<Vec<Option<Sample>>>;

/// Every repetition's samples.
#[derive(Default)]
struct Samples {
    /// Per repetition: every rate of every side.
    rates: Vec<RateSamples>,
    /// Per repetition: framework p50, raw p50, framework p99, raw p99.
    latencies: Vec<[f64; 4]>,
}

/// One repetition of every rate on every side of `sides`, in order.
async fn rates_repetition(url: &str, opts: &Opts, rep: usize, sides: &[Side]) -> RateSamples {
    let mut rates = Vec::new();
    for (_, m) in RATES {
        let mut row = Vec::new();
        for &side in sides {
            row.push(sample(side, m, url, opts, rep).await);
        }
        rates.push(row);
    }
    rates
}

/// Adds the rate rows of `rates` (every repetition's samples of `sides`),
/// then the client and server CPU rows of the processing rates.
fn add_rate_rows(rates: &[RateSamples], sides: &[Side], res: &mut Results) {
    // the samples of one side of one row (none when it is not measured)
    let col = |i: usize, side: Side, f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<f64> {
        let Some(k) = sides.iter().position(|s| *s == side) else {
            return vec![];
        };
        rates
            .iter()
            .filter_map(|r| r[i][k].as_ref().and_then(f))
            .collect()
    };
    let add =
        |res: &mut Results, name: &str, i: usize, f: &dyn Fn(&Sample) -> Option<f64>, unit| {
            res.add_with_go(
                name,
                col(i, Side::Framework, f),
                col(i, Side::Best, f),
                col(i, Side::Raw, f),
                col(i, Side::Go, f),
                unit,
            );
        };
    for (i, (name, _)) in RATES.into_iter().enumerate() {
        add(res, name, i, &|s| Some(s.0), "tasks/s");
    }
    // CPU per task over the timed sections: this process (the client:
    // producer and worker; Go's program for Go) and nats-server
    for (i, (name, m)) in RATES.into_iter().enumerate() {
        if m.has_cpu_span() {
            add(
                res,
                &format!("{name} client CPU"),
                i,
                &|s| Some(s.1 .0),
                "µs/task",
            );
            add(
                res,
                &format!("{name} server CPU"),
                i,
                &|s| s.1 .1,
                "µs/task",
            );
        }
    }
}

/// The rate, client CPU and server CPU rows of the framework beside the
/// best raw client (and Go with `--go`), `reps` repetitions at
/// `opts.tasks` (for `--sizes` and `--cluster`).
pub async fn paired_rates(url: &str, opts: &Opts, reps: usize, res: &mut Results) {
    let sides = sides(opts, false);
    let mut rates = Vec::new();
    for rep in 0..reps {
        rates.push(rates_repetition(url, opts, rep, &sides).await);
    }
    add_rate_rows(&rates, &sides, res);
}

/// One repetition: every rate on every side, then the latencies.
async fn repetition(url: &str, opts: &Opts, rep: usize, sides: &[Side], samples: &mut Samples) {
    samples
        .rates
        .push(rates_repetition(url, opts, rep, sides).await);
    let (p50, p99) = framework::latency(url, opts, rep).await;
    let (rp50, rp99) = raw::latency(url, opts, rep).await;
    samples.latencies.push([p50, rp50, p99, rp99]);
}

/// Measures `reps` repetitions and adds their rows: rates, client and
/// server CPU of the processing rates, latency.
pub async fn run(url: &str, opts: &Opts, reps: usize, res: &mut Results) {
    let sides = sides(opts, true);
    let mut samples = Samples::default();
    for rep in 0..reps {
        repetition(url, opts, rep, &sides, &mut samples).await;
    }
    let Samples { rates, latencies } = samples;
    add_rate_rows(&rates, &sides, res);
    let lat = |i: usize| latencies.iter().map(|r| r[i]).collect::<Vec<f64>>();
    res.add("latency p50", lat(0), vec![], lat(1), "ms");
    res.add("latency p99", lat(2), vec![], lat(3), "ms");
}
