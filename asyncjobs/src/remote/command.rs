//! External commands: [`ExternalCommand`], a handler that runs a program
//! for each task with the task JSON in a temporary file, in its own process
//! group. The try ends when the program exits (its output is read for a
//! short grace after that); whatever is left of the group is then ended, as
//! it is at the (live) handler deadline, on cancellation or when the worker
//! drops the handler (and, on Linux, when the worker dies: see
//! `supervisor`). docs/processing.md §6.4, docs/go-differences.md §61.

use super::{to_std, TASK_FILE_ENV};
use crate::handler::{to_output, Handler, HandlerError, HandlerResult, TaskContext};
use crate::task::Task;
use futures::future::BoxFuture;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How much of a failing command's stderr goes into `last_err`.
pub(super) const STDERR_LIMIT: usize = 4096;
/// How long the output is read after the program exits, by default
/// ([`ExternalCommand::output_grace`]).
const DEFAULT_OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// How long the processes of a group told to end (SIGTERM) get before they
/// are killed (SIGKILL).
const TERM_WAIT: Duration = Duration::from_millis(500);
/// How often a group told to end is looked at while it gets [`TERM_WAIT`].
const TERM_POLL: Duration = Duration::from_millis(20);
/// A handler that runs a program for each task (docs/processing.md §6.4; Go's
/// `Mux.ExternalProcess`).
///
/// The program is run with no arguments, stdin closed, and an environment
/// holding only `CHORIA_AJ_TASK=<file>` (plus anything added with
/// [`env`](Self::env)), where `<file>` is a temporary file
/// (`asyncjobs-task*` in the system temp directory) holding the task JSON. The
/// file is removed afterwards in every case.
///
/// The try ends when the program exits, not when its stdout and stderr
/// close: a process it started in the background may hold them open. What
/// arrives on them is read for a short grace after the exit (1 s, see
/// [`output_grace`](Self::output_grace)), then reading stops and what was
/// read is the output. Every process left in the program's process group is
/// then told to end (SIGTERM) and killed (SIGKILL) if it is still there
/// 0.5 s later: a try's processes never outlive it.
///
/// * exit status 0: the task completes; its result is stdout as a JSON
///   string (as Go stores it), e.g. `"done\n"`.
/// * non-zero exit: retried with `last_err` `execution failed: exit status
///   <n>: <end of stderr>` (Go stops after `exit status <n>`).
/// * still running at the handler deadline: the program and every process
///   in its process group are ended (SIGTERM, then SIGKILL) and the try
///   fails with `execution failed: signal: killed: still running at the
///   handler deadline …` (plus the end of stderr). This comes slightly early
///   — a quarter of the run time, at most 1 s, before the deadline — so this
///   message, rather than the worker's generic time-out, ends up in
///   `last_err`. The deadline is the live one
///   ([`TaskContext::handler_deadline`]): when it moves while the program
///   runs (a heartbeat, the queue's run time raised or lowered and seen by
///   the worker), the kill moves with it. The group is also ended when the
///   handler is cancelled (worker shutdown), and killed when its future is
///   dropped.
/// * the worker process dies (Linux): the group is killed too, so a task
///   never runs twice at once — its retry waits for the first try's lease
///   (the queue's run time plus a margin), by which time nothing of the
///   first try is left. The process the worker spawns forks once more and
///   stays as a tiny supervisor (it never execs, exits as the command did,
///   and is the pid and process group leader the worker sees); it kills the
///   group within ~0.1 s of the worker's death. Processes that leave the
///   group (`setsid`, `setpgid`, daemonising) are not covered. On other
///   Unix systems only the process group is used.
/// * a missing program: `command not found: <path>` at construction and on
///   each call.
///
/// ```no_run
/// use asyncjobs::{remote::ExternalCommand, Router};
/// # fn demo() -> asyncjobs::Result<()> {
/// let router = Router::new()
///     .handle("webhook:call", ExternalCommand::new("/usr/local/bin/webhook-call")?)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ExternalCommand {
    path: PathBuf,
    env: Vec<(OsString, OsString)>,
    output_grace: Duration,
}

impl ExternalCommand {
    /// Runs the program at `path` (a relative path is resolved against the
    /// current directory now). Fails with `command not found: <path>` if it
    /// does not exist or is a directory.
    pub fn new(path: impl AsRef<Path>) -> crate::Result<ExternalCommand> {
        let path = std::path::absolute(path.as_ref())
            .map_err(|e| crate::Error::Config(format!("command not found: {e}")))?;
        check_command(&path).map_err(crate::Error::Config)?;
        Ok(ExternalCommand {
            path,
            env: Vec::new(),
            output_grace: DEFAULT_OUTPUT_GRACE,
        })
    }

    /// How long stdout and stderr are still read after the program exited
    /// (default 1 s; Go's `exec.Cmd.WaitDelay` plays this part). Output a
    /// background process writes later is not read, and the try does not
    /// wait for it. Reading also stops at the handler deadline's kill point
    /// and on cancellation. A zero grace may lose the last output the
    /// program wrote just before it exited.
    pub fn output_grace(mut self, grace: Duration) -> Self {
        self.output_grace = grace;
        self
    }

    /// Adds an environment variable for the program (by default it gets
    /// only `CHORIA_AJ_TASK`, not even `PATH`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The program's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn check_command(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Ok(()),
        _ => Err(format!("command not found: {}", path.display())),
    }
}

impl Handler for ExternalCommand {
    fn call(&self, ctx: TaskContext, task: Task) -> BoxFuture<'static, HandlerResult> {
        let cmd = self.clone();
        Box::pin(async move { cmd.run(ctx, task).await })
    }
}

impl ExternalCommand {
    /// One try: writes the task file, starts the program and waits for it
    /// to exit (then reads its output for the grace and ends what is left
    /// of its process group), or ends it at the deadline or on
    /// cancellation.
    async fn run(self, ctx: TaskContext, task: Task) -> HandlerResult {
        check_command(&self.path).map_err(HandlerError::retry)?;
        let json = task
            .to_json()
            .map_err(|e| HandlerError::retry(format!("could not encode task: {e}")))?;
        // Removed when dropped: on every return path and when the worker
        // drops this future.
        let task_file = write_task_file(&json).map_err(|e| {
            HandlerError::retry(format!("execution failed: writing the task file: {e}"))
        })?;
        let cmd = self.command(&ctx, &task_file);
        let started = Instant::now();
        let margin = kill_margin(&ctx);
        let (mut child, mut running) = Running::spawn(cmd)?;
        tracing::debug!(task = %task.id, command = %self.path.display(), pid = ?running.pid, "started external command");
        let status = match running.wait(&mut child, &ctx, margin).await {
            Stop::Exited(Ok(status)) => status,
            Stop::Exited(Err(e)) => {
                return Err(HandlerError::retry(format!("execution failed: {e}")));
            }
            stop => return Err(running.kill(&mut child, &stop, started, margin).await),
        };
        running.drain(&ctx, self.output_grace, margin).await;
        running.end_group().await;
        drop(task_file);
        running.outcome(status)
    }

    /// The program with only `CHORIA_AJ_TASK`, the trace context and the
    /// variables given, stdin closed, stdout and stderr piped, in a process
    /// group of its own (under a supervisor on Linux).
    fn command(&self, ctx: &TaskContext, task_file: &Path) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.env_clear().env(TASK_FILE_ENV, task_file);
        // the command continues this try's trace (W3C TRACEPARENT, as
        // OpenTelemetry's environment-variable propagation names it)
        if let Some(tp) =
            crate::spans::traceparent(&tracing::Span::current(), ctx.traceparent.clone())
        {
            cmd.env("TRACEPARENT", tp);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        super::supervisor::install(&mut cmd);
        cmd
    }
}

/// How the wait for the program ended.
enum Stop {
    Exited(std::io::Result<ExitStatus>),
    Deadline,
    Cancelled,
}

/// A started program: the readers of its stdout and stderr and what they
/// collected. Kills the process group and stops the readers if the handler
/// ends (or is dropped by the worker) while the program may still run.
struct Running {
    pid: Option<u32>,
    armed: bool,
    readers: Vec<JoinHandle<()>>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    /// Starts `cmd` and the readers of its pipes.
    fn spawn(mut cmd: Command) -> Result<(Child, Running), HandlerError> {
        let mut child = cmd
            .spawn()
            .map_err(|e| HandlerError::retry(format!("execution failed: {e}")))?;
        let (stdout, stderr) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let running = Running {
            pid: child.id(),
            armed: true,
            readers: vec![
                spawn_reader(child.stdout.take(), stdout.clone()),
                spawn_reader(child.stderr.take(), stderr.clone()),
            ],
            stdout,
            stderr,
        };
        Ok((child, running))
    }

    /// Waits until the program exits (not for its pipes to close), the kill
    /// point before the live handler deadline comes or the handler is
    /// cancelled.
    async fn wait(&mut self, child: &mut Child, ctx: &TaskContext, margin: Duration) -> Stop {
        tokio::select! {
            s = child.wait() => Stop::Exited(s),
            _ = kill_point(ctx, margin) => Stop::Deadline,
            _ = ctx.cancelled() => Stop::Cancelled,
        }
    }

    /// After the exit: reads stdout and stderr until they close, for at most
    /// `grace` (and not past the kill point or a cancellation), then stops
    /// reading.
    async fn drain(&mut self, ctx: &TaskContext, grace: Duration, margin: Duration) {
        let readers = futures::future::join_all(self.readers.iter_mut());
        tokio::select! {
            _ = readers => {}
            _ = tokio::time::sleep(grace) => {}
            _ = kill_point(ctx, margin) => {}
            _ = ctx.cancelled() => {}
        }
        for r in self.readers.drain(..) {
            r.abort();
        }
    }

    /// After the exit: ends whatever the program left in its process group
    /// (SIGTERM, then SIGKILL for what is still there after [`TERM_WAIT`]).
    async fn end_group(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.pid {
            if crate::sys::process_group_exists(pid) {
                tracing::debug!(pid, "ending the processes an external command left behind");
                crate::sys::terminate_process_group(pid);
                let until = Instant::now() + TERM_WAIT;
                while crate::sys::process_group_exists(pid) && Instant::now() < until {
                    tokio::time::sleep(TERM_POLL).await;
                }
                crate::sys::kill_process_group(pid);
            }
        }
        self.armed = false;
    }

    /// Ends the process group (SIGTERM, then SIGKILL once the program has
    /// had half the margin before the deadline, at most [`TERM_WAIT`]),
    /// collects what it wrote (the pipes close once the group is gone) and
    /// says why it was killed.
    async fn kill(
        &mut self,
        child: &mut Child,
        stop: &Stop,
        started: Instant,
        margin: Duration,
    ) -> HandlerError {
        self.terminate_group();
        let _ = tokio::time::timeout((margin / 2).min(TERM_WAIT), child.wait()).await;
        self.kill_group();
        let _ = child.kill().await;
        self.armed = false;
        let readers = std::mem::take(&mut self.readers);
        let _ =
            tokio::time::timeout(Duration::from_secs(1), futures::future::join_all(readers)).await;
        let why = if matches!(stop, Stop::Deadline) {
            format!(
                "still running at the handler deadline after {:.1}s",
                started.elapsed().as_secs_f64()
            )
        } else {
            "the handler was cancelled".to_string()
        };
        HandlerError::retry(self.failure(format!("signal: killed: {why}")))
    }

    /// The task's outcome once the program exited with `status`: its stdout
    /// as the result, or a failure.
    fn outcome(&self, status: ExitStatus) -> HandlerResult {
        if !status.success() {
            return Err(HandlerError::retry(self.failure(describe_status(&status))));
        }
        let out = std::mem::take(&mut *self.stdout.lock().expect("pipe buffer"));
        to_output(&String::from_utf8_lossy(&out))
    }

    /// `execution failed: <what>`, then the end of stderr, if any.
    fn failure(&self, what: impl std::fmt::Display) -> String {
        let tail = stderr_tail(&self.stderr.lock().expect("pipe buffer"));
        let mut msg = format!("execution failed: {what}");
        if !tail.is_empty() {
            msg.push_str(": ");
            msg.push_str(&tail);
        }
        msg
    }

    fn kill_group(&self) {
        #[cfg(unix)]
        if let Some(pid) = self.pid {
            crate::sys::kill_process_group(pid);
        }
    }

    fn terminate_group(&self) {
        #[cfg(unix)]
        if let Some(pid) = self.pid {
            crate::sys::terminate_process_group(pid);
        }
    }
}

/// How long before the handler deadline a still running program is ended:
/// a quarter of the time left now (the run time, as the try starts), at
/// most 1 s, so its failure rather than the worker's generic time-out is
/// recorded.
fn kill_margin(ctx: &TaskContext) -> Duration {
    ctx.handler_deadline()
        .map(|d| (to_std(d - OffsetDateTime::now_utc()) / 4).min(Duration::from_secs(1)))
        .unwrap_or_default()
}

/// Resolves `margin` before the live handler deadline: it is read again
/// whenever it moves (`TaskContext::deadline_changed`), so a raised run
/// time lets the program go on and a lowered one stops it sooner. Never
/// resolves without a deadline.
async fn kill_point(ctx: &TaskContext, margin: Duration) {
    loop {
        let Some(deadline) = ctx.handler_deadline() else {
            return std::future::pending().await;
        };
        let left = to_std(deadline - OffsetDateTime::now_utc()).saturating_sub(margin);
        if left.is_zero() {
            return;
        }
        // the sleep ending reads the deadline again: a move the watch
        // reported before this wait began is seen then
        tokio::select! {
            _ = tokio::time::sleep(left) => {}
            _ = ctx.deadline_changed() => {}
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.armed {
            self.kill_group();
        }
        for r in &self.readers {
            r.abort();
        }
    }
}

fn spawn_reader(
    pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    buf: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.lock()
                .expect("pipe buffer")
                .extend_from_slice(&chunk[..n]);
        }
    })
}

/// The end of stderr, trimmed, at most [`STDERR_LIMIT`] bytes.
pub(super) fn stderr_tail(buf: &[u8]) -> String {
    let text = String::from_utf8_lossy(buf);
    let text = text.trim();
    if text.len() <= STDERR_LIMIT {
        return text.to_string();
    }
    let mut start = text.len() - STDERR_LIMIT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Go's `exec.ExitError` wording: `exit status N` or `signal: killed`.
fn describe_status(status: &std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                1 => "hangup".to_string(),
                2 => "interrupt".to_string(),
                6 => "aborted".to_string(),
                9 => "killed".to_string(),
                11 => "segmentation fault".to_string(),
                13 => "broken pipe".to_string(),
                15 => "terminated".to_string(),
                n => format!("signal {n}"),
            };
            return format!("signal: {name}");
        }
    }
    status.to_string()
}

fn write_task_file(json: &[u8]) -> std::io::Result<tempfile::TempPath> {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .prefix("asyncjobs-task")
        .tempfile()?;
    file.write_all(json)?;
    file.flush()?;
    Ok(file.into_temp_path())
}
