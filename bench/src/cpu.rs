//! CPU time spent per task by the benchmark process (the client side) and
//! by nats-server, over a measurement's timed section, from
//! `/proc/<pid>/stat` (`utime + stime`, clock ticks of 10 ms: with
//! thousands of tasks per measurement that is a resolution of a few µs
//! per task).

use std::sync::{Mutex, OnceLock};

/// The nats-server's process id, when the benchmark started it.
static SERVER_PID: OnceLock<u32> = OnceLock::new();
/// Client and server (when known) CPU µs per task of one span.
pub type PerTask = (f64, Option<f64>);

/// The last finished span.
static LAST: Mutex<Option<PerTask>> = Mutex::new(None);

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`).
const TICKS_PER_SEC: f64 = 100.0;

pub fn set_server_pid(pid: u32) {
    let _ = SERVER_PID.set(pid);
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
            server: SERVER_PID.get().and_then(|p| cpu_seconds(&p.to_string())),
        }
    }

    /// Ends the span over `tasks` tasks; [`take`] returns the result.
    pub fn finish(self, tasks: usize) {
        let per_task = |before: Option<f64>, now: Option<f64>| {
            Some((now? - before?) * 1e6 / tasks.max(1) as f64)
        };
        let client = per_task(self.client, cpu_seconds("self")).unwrap_or(0.0);
        let server = per_task(
            self.server,
            SERVER_PID.get().and_then(|p| cpu_seconds(&p.to_string())),
        );
        *LAST.lock().unwrap() = Some((client, server));
    }
}

/// The last finished span's client and server µs per task.
pub fn take() -> PerTask {
    LAST.lock().unwrap().take().unwrap_or((0.0, None))
}
