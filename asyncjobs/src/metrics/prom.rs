//! The Prometheus side of [`metrics`](super): the registry and the
//! recorders, compiled with the `metrics` feature (the HTTP endpoint is
//! `endpoint.rs`).

use super::{MAX_TASK_TYPES, OTHER_TASK_TYPE};
use crate::task::TaskState;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType, Summary};
use prometheus::{Counter, CounterVec, Gauge, GaugeVec, Opts, Registry};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// The `type` label values of one metric family: the first
/// [`MAX_TASK_TYPES`] distinct task types keep their name, later ones are
/// folded into [`OTHER_TASK_TYPE`] so the family's series stay bounded.
#[derive(Default)]
struct TypeLabels {
    seen: Mutex<HashSet<String>>,
}

impl TypeLabels {
    fn label<'a>(&self, task_type: &'a str) -> &'a str {
        let mut seen = self.seen.lock().expect("type labels lock");
        if seen.contains(task_type) {
            task_type
        } else if seen.len() < MAX_TASK_TYPES {
            seen.insert(task_type.to_string());
            task_type
        } else {
            OTHER_TASK_TYPE
        }
    }
}

type SummaryValues = HashMap<(String, String), (u64, f64)>;

/// A summary without quantiles (only `_sum` and `_count`), like the Go
/// `handler_runtime` metric; the prometheus crate has no summary type.
#[derive(Clone)]
struct RuntimeSummary {
    desc: Desc,
    /// (queue, type) → (count, sum of seconds)
    values: Arc<Mutex<SummaryValues>>,
}

impl RuntimeSummary {
    fn new() -> RuntimeSummary {
        RuntimeSummary {
            desc: Desc::new(
                "choria_asyncjobs_handler_runtime".into(),
                "Time taken by handlers in seconds".into(),
                vec!["queue".into(), "type".into()],
                HashMap::new(),
            )
            .expect("valid metric"),
            values: Arc::default(),
        }
    }

    fn observe(&self, queue: &str, task_type: &str, seconds: f64) {
        let mut v = self.values.lock().expect("summary lock");
        let e = v
            .entry((queue.to_string(), task_type.to_string()))
            .or_default();
        e.0 += 1;
        e.1 += seconds;
    }
}

impl Collector for RuntimeSummary {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        let values = self.values.lock().expect("summary lock");
        let label = |n: &str, v: &str| {
            let mut l = LabelPair::default();
            l.set_name(n.to_string());
            l.set_value(v.to_string());
            l
        };
        let mut metrics = Vec::with_capacity(values.len());
        for ((queue, task_type), (count, sum)) in values.iter() {
            let mut m = Metric::default();
            m.set_label(vec![label("queue", queue), label("type", task_type)]);
            let mut summary = Summary::default();
            summary.set_sample_count(*count);
            summary.set_sample_sum(*sum);
            m.set_summary(summary);
            metrics.push(m);
        }
        family.set_metric(metrics);
        vec![family]
    }
}

struct Metrics {
    registry: Registry,
    enqueue: CounterVec,
    enqueue_error: CounterVec,
    item_corrupt: CounterVec,
    task_not_found: CounterVec,
    past_deadline: CounterVec,
    past_max_tries: CounterVec,
    poll: CounterVec,
    poll_error: CounterVec,
    background_error: CounterVec,
    task_rescued: CounterVec,
    rate_limited: CounterVec,
    lane_claimed: CounterVec,
    task_update: CounterVec,
    task_update_error: Counter,
    dependencies_failed: Counter,
    handler_busy: Gauge,
    handler_error: CounterVec,
    handler_error_types: TypeLabels,
    handler_runtime: RuntimeSummary,
    handler_runtime_types: TypeLabels,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(format!("choria_asyncjobs_{name}"), help), labels)
        .expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let task_update_error = Counter::new(
        "choria_asyncjobs_task_update_error_total",
        "The number of task updates that failed",
    )
    .expect("valid metric");
    r.register(Box::new(task_update_error.clone()))
        .expect("unique metric");
    let dependencies_failed = Counter::new(
        "choria_asyncjobs_task_dependencies_failed",
        "The number of tasks made unreachable because a dependency failed",
    )
    .expect("valid metric");
    r.register(Box::new(dependencies_failed.clone()))
        .expect("unique metric");
    let handler_busy = Gauge::new(
        "choria_asyncjobs_handler_busy_count",
        "Handlers currently running",
    )
    .expect("valid metric");
    r.register(Box::new(handler_busy.clone()))
        .expect("unique metric");
    let handler_runtime = RuntimeSummary::new();
    r.register(Box::new(handler_runtime.clone()))
        .expect("unique metric");
    Metrics {
        enqueue: counter_vec(
            &r,
            "queue_enqueue_count",
            "Work items published",
            &["queue"],
        ),
        enqueue_error: counter_vec(
            &r,
            "queue_enqueue_error_count",
            "Work items that could not be published",
            &["queue"],
        ),
        item_corrupt: counter_vec(
            &r,
            "queue_item_corrupt_error_count",
            "Corrupt work items received",
            &["queue"],
        ),
        task_not_found: counter_vec(
            &r,
            "queue_task_not_found_error_count",
            "Work items whose task could not be loaded",
            &["queue"],
        ),
        past_deadline: counter_vec(
            &r,
            "queue_task_past_deadline_count",
            "Tasks delivered after their deadline",
            &["queue"],
        ),
        past_max_tries: counter_vec(
            &r,
            "queue_task_past_max_tries_count",
            "Tasks delivered after their maximum tries",
            &["queue"],
        ),
        poll: counter_vec(&r, "queue_poll_total", "Pull requests made", &["queue"]),
        poll_error: counter_vec(
            &r,
            "queue_poll_error_total",
            "Pull requests that failed",
            &["queue"],
        ),
        background_error: counter_vec(
            &r,
            "background_error_total",
            "Unexpected server answers met by background loops and event watchers (ours)",
            &["loop"],
        ),
        task_rescued: counter_vec(
            &r,
            "task_rescued_total",
            "Tries of workers presumed dead that were queued again (ours)",
            &["queue"],
        ),
        rate_limited: counter_vec(
            &r,
            "queue_rate_limit_total",
            "Asks of a queue's rate limit, by outcome: granted or wait (ours)",
            &["queue", "outcome"],
        ),
        lane_claimed: counter_vec(
            &r,
            "queue_lane_claimed_total",
            "Items claimed out of arrival order, by lane: P1-P9 priorities, K0-K15 key shards (ours)",
            &["queue", "lane"],
        ),
        task_update: counter_vec(&r, "task_update_total", "Task records saved", &["state"]),
        handler_error: counter_vec(
            &r,
            "handler_error_total",
            "Handlers that returned an error",
            &["queue", "type"],
        ),
        task_update_error,
        dependencies_failed,
        handler_busy,
        handler_runtime,
        handler_error_types: TypeLabels::default(),
        handler_runtime_types: TypeLabels::default(),
        registry: r,
    }
});

/// The registry holding every asyncjobs metric.
pub fn registry() -> &'static Registry {
    &METRICS.registry
}

/// Registers every asyncjobs metric in the application's own registry too
/// (they keep counting in [`registry`] as well).
pub fn register_in(registry: &Registry) -> prometheus::Result<()> {
    let m = &*METRICS;
    let collectors: Vec<Box<dyn Collector>> = vec![
        Box::new(m.enqueue.clone()),
        Box::new(m.enqueue_error.clone()),
        Box::new(m.item_corrupt.clone()),
        Box::new(m.task_not_found.clone()),
        Box::new(m.past_deadline.clone()),
        Box::new(m.past_max_tries.clone()),
        Box::new(m.poll.clone()),
        Box::new(m.poll_error.clone()),
        Box::new(m.task_update.clone()),
        Box::new(m.task_update_error.clone()),
        Box::new(m.dependencies_failed.clone()),
        Box::new(m.handler_busy.clone()),
        Box::new(m.handler_error.clone()),
        Box::new(m.handler_runtime.clone()),
    ];
    for c in collectors {
        registry.register(c)?;
    }
    Ok(())
}

/// The metrics of [`registry`] in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut out)
        .expect("text encoding");
    String::from_utf8(out).expect("text format is UTF-8")
}

pub(crate) fn enqueue(queue: &str) {
    METRICS.enqueue.with_label_values(&[queue]).inc();
}
pub(crate) fn enqueue_error(queue: &str) {
    METRICS.enqueue_error.with_label_values(&[queue]).inc();
}
pub(crate) fn item_corrupt(queue: &str) {
    METRICS.item_corrupt.with_label_values(&[queue]).inc();
}
pub(crate) fn task_not_found(queue: &str) {
    METRICS.task_not_found.with_label_values(&[queue]).inc();
}
pub(crate) fn past_deadline(queue: &str) {
    METRICS.past_deadline.with_label_values(&[queue]).inc();
}
pub(crate) fn past_max_tries(queue: &str) {
    METRICS.past_max_tries.with_label_values(&[queue]).inc();
}
pub(crate) fn poll(queue: &str, n: u64) {
    METRICS.poll.with_label_values(&[queue]).inc_by(n as f64);
}
pub(crate) fn poll_error(queue: &str) {
    METRICS.poll_error.with_label_values(&[queue]).inc();
}
pub(crate) fn background_error(task: &str) {
    METRICS.background_error.with_label_values(&[task]).inc();
}
pub(crate) fn task_rescued(queue: &str) {
    METRICS.task_rescued.with_label_values(&[queue]).inc();
}
pub(crate) fn rate_limited(queue: &str, waited: bool) {
    let outcome = if waited { "wait" } else { "granted" };
    METRICS
        .rate_limited
        .with_label_values(&[queue, outcome])
        .inc();
}
pub(crate) fn lane_claimed(queue: &str, lane: crate::queue::lane::Lane) {
    use crate::queue::lane::Lane;
    let label = match lane {
        Lane::Plain => "plain".to_string(),
        Lane::Priority(p) => format!("P{p}"),
        Lane::Shard(s) => format!("K{s}"),
    };
    METRICS
        .lane_claimed
        .with_label_values(&[queue, &label])
        .inc();
}
pub(crate) fn task_update(state: TaskState) {
    METRICS
        .task_update
        .with_label_values(&[state.as_str()])
        .inc();
}
pub(crate) fn task_update_error() {
    METRICS.task_update_error.inc();
}
pub(crate) fn dependencies_failed() {
    METRICS.dependencies_failed.inc();
}
pub(crate) fn handler_started() {
    METRICS.handler_busy.inc();
}
pub(crate) fn handler_finished(queue: &str, task_type: &str, seconds: f64, failed: bool) {
    METRICS.handler_busy.dec();
    let m = &*METRICS;
    m.handler_runtime
        .observe(queue, m.handler_runtime_types.label(task_type), seconds);
    if failed {
        m.handler_error
            .with_label_values(&[queue, m.handler_error_types.label(task_type)])
            .inc();
    }
}

// ----- leader elections (registered when the first election starts) -----------------------

struct Election {
    campaigns: CounterVec,
    leader: GaugeVec,
    interval: GaugeVec,
}

static ELECTION: LazyLock<Election> = LazyLock::new(|| {
    let r = registry();
    let campaigns = CounterVec::new(
        Opts::new(
            "choria_asyncjobs_election_campaigns",
            "Leader election campaigns",
        ),
        &["election", "identity", "state"],
    )
    .expect("valid metric");
    let leader = GaugeVec::new(
        Opts::new(
            "choria_asyncjobs_election_leader",
            "1 while this candidate is the leader",
        ),
        &["election", "identity"],
    )
    .expect("valid metric");
    let interval = GaugeVec::new(
        Opts::new(
            "choria_asyncjobs_election_interval_seconds",
            "Leader election campaign interval",
        ),
        &["election", "identity"],
    )
    .expect("valid metric");
    r.register(Box::new(campaigns.clone()))
        .expect("unique metric");
    r.register(Box::new(leader.clone())).expect("unique metric");
    r.register(Box::new(interval.clone()))
        .expect("unique metric");
    Election {
        campaigns,
        leader,
        interval,
    }
});

pub(crate) fn election_started(election: &str, identity: &str, interval: Duration) {
    let labels = [election, identity];
    ELECTION
        .interval
        .with_label_values(&labels)
        .set(interval.as_secs_f64());
    ELECTION.leader.with_label_values(&labels).set(0.0);
}
pub(crate) fn election_campaign(election: &str, identity: &str, role: &str) {
    ELECTION
        .campaigns
        .with_label_values(&[election, identity, role])
        .inc();
}
pub(crate) fn election_leader(election: &str, identity: &str, leader: bool) {
    ELECTION
        .leader
        .with_label_values(&[election, identity])
        .set(if leader { 1.0 } else { 0.0 });
}

// ----- the task scheduler (registered when the first scheduler starts) ----------------------

struct Scheduler {
    paused: Gauge,
    schedules: Gauge,
    scheduled: CounterVec,
    scheduled_types: TypeLabels,
    errors: CounterVec,
    errors_types: TypeLabels,
}

static SCHEDULER: LazyLock<Scheduler> = LazyLock::new(|| {
    let r = registry();
    let paused = Gauge::new(
        "choria_asyncjobs_task_scheduler_paused",
        "1 when the task scheduler is not the leader",
    )
    .expect("valid metric");
    let schedules = Gauge::new(
        "choria_asyncjobs_task_scheduler_schedules_total",
        "Schedules loaded by the task scheduler",
    )
    .expect("valid metric");
    let scheduled = CounterVec::new(
        Opts::new(
            "choria_asyncjobs_task_scheduler_scheduled_count",
            "Tasks created by the task scheduler",
        ),
        &["type", "queue"],
    )
    .expect("valid metric");
    let errors = CounterVec::new(
        Opts::new(
            "choria_asyncjobs_task_scheduler_schedule_error_count",
            "Scheduled tasks that could not be created",
        ),
        &["type", "queue"],
    )
    .expect("valid metric");
    r.register(Box::new(paused.clone())).expect("unique metric");
    r.register(Box::new(schedules.clone()))
        .expect("unique metric");
    r.register(Box::new(scheduled.clone()))
        .expect("unique metric");
    r.register(Box::new(errors.clone())).expect("unique metric");
    Scheduler {
        paused,
        schedules,
        scheduled,
        scheduled_types: TypeLabels::default(),
        errors,
        errors_types: TypeLabels::default(),
    }
});

pub(crate) fn scheduler_paused(paused: bool) {
    SCHEDULER.paused.set(if paused { 1.0 } else { 0.0 });
}
pub(crate) fn scheduler_schedules_changed(by: i64) {
    SCHEDULER.schedules.add(by as f64);
}
pub(crate) fn scheduler_scheduled(task_type: &str, queue: &str) {
    let task_type = SCHEDULER.scheduled_types.label(task_type);
    SCHEDULER
        .scheduled
        .with_label_values(&[task_type, queue])
        .inc();
}
pub(crate) fn scheduler_error(task_type: &str, queue: &str) {
    let task_type = SCHEDULER.errors_types.label(task_type);
    SCHEDULER
        .errors
        .with_label_values(&[task_type, queue])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_labels_keep_the_first_types_and_fold_the_rest() {
        let labels = TypeLabels::default();
        let types: Vec<String> = (0..1000).map(|i| format!("type{i}")).collect();
        let got: Vec<&str> = types.iter().map(|t| labels.label(t)).collect();
        assert_eq!(got[..MAX_TASK_TYPES], types[..MAX_TASK_TYPES]);
        assert!(got[MAX_TASK_TYPES..].iter().all(|t| *t == OTHER_TASK_TYPE));
        // a type seen early keeps its name later
        assert_eq!(labels.label("type7"), "type7");
        assert_eq!(labels.label("type999"), OTHER_TASK_TYPE);
    }

    /// Distinct `type` values and the total count of `family` for `queue`.
    fn series(family: &str, queue: &str) -> (HashSet<String>, u64) {
        let mut types = HashSet::new();
        let mut total = 0;
        for f in registry().gather() {
            if f.name() != family {
                continue;
            }
            for m in f.get_metric() {
                let label = |n: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == n)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                types.insert(label("type"));
                if label("queue") != queue {
                    continue;
                }
                total += if f.get_field_type() == MetricType::SUMMARY {
                    m.get_summary().sample_count()
                } else {
                    m.get_counter().get_value() as u64
                };
            }
        }
        (types, total)
    }

    #[test]
    fn a_thousand_task_types_make_a_bounded_number_of_series() {
        let queue = "BOUNDED_TYPES";
        for i in 0..1000 {
            let t = format!("bounded:{i}");
            handler_started();
            handler_finished(queue, &t, 0.5, true);
            scheduler_scheduled(&t, queue);
            scheduler_error(&t, queue);
        }
        for family in [
            "choria_asyncjobs_handler_runtime",
            "choria_asyncjobs_handler_error_total",
            "choria_asyncjobs_task_scheduler_scheduled_count",
            "choria_asyncjobs_task_scheduler_schedule_error_count",
        ] {
            let (types, total) = series(family, queue);
            assert!(
                types.len() <= MAX_TASK_TYPES + 1,
                "{family} has {} type labels",
                types.len()
            );
            assert!(types.contains(OTHER_TASK_TYPE), "{family} folds into other");
            assert_eq!(total, 1000, "{family} still counts every observation");
        }
    }
}
