//! CPU time spent per task by the benchmark process (the client side) and
//! by nats-server (the sum of a cluster's nodes), over a measurement's timed section, from
//! `/proc/<pid>/stat` (`utime + stime`, clock ticks of 10 ms: with
//! thousands of tasks per measurement that is a resolution of a few µs
//! per task).

use std::sync::Mutex;

/// The nats-servers' process ids, when the benchmark started them.
static SERVER_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Client and server (when known) CPU µs per task of one span.
pub type PerTask = (f64, Option<f64>);

/// The last finished span.
static LAST: Mutex<Option<PerTask>> = Mutex::new(None);

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`).
const TICKS_PER_SEC: f64 = 100.0;

pub fn set_server_pid(pid: u32) {
    set_server_pids(&[pid]);
}

/// The servers whose CPU is summed from now on (a cluster's nodes).
pub fn set_server_pids(pids: &[u32]) {
    *SERVER_PIDS.lock().unwrap() = pids.to_vec();
}

/// The CPU seconds of the servers (`None` when unknown).
fn server_seconds() -> Option<f64> {
    let pids = SERVER_PIDS.lock().unwrap().clone();
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_seconds(&p.to_string())).sum()
}

/// CPU seconds (user + system) of process `pid` (`self` for this one).
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command name, which is in parentheses
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// The timed section of one measurement.
pub struct Span {
    client: Option<f64>,
    server: Option<f64>,
}

impl Span {
    pub fn start() -> Span {
        Span {
            client: cpu_seconds("self"),
            server: server_seconds(),
        }
    }

    /// Ends the span over `tasks` tasks; [`take`] returns the result.
    pub fn finish(self, tasks: usize) {
        let per_task = |before: Option<f64>, now: Option<f64>| {
            Some((now? - before?) * 1e6 / tasks.max(1) as f64)
        };
        let client = per_task(self.client, cpu_seconds("self")).unwrap_or(0.0);
        let server = per_task(self.server, server_seconds());
        *LAST.lock().unwrap() = Some((client, server));
    }
}

/// The last finished span's client and server µs per task.
pub fn take() -> PerTask {
    LAST.lock().unwrap().take().unwrap_or((0.0, None))
}
