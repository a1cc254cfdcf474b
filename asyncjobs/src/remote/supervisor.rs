//! Keeps an external command's processes from outliving the worker (Linux).
//!
//! The process the worker spawns (the leader of the command's new process
//! group) forks before `exec`: the fork runs the command, and the leader
//! stays behind as a small supervisor that never execs. It waits for the
//! command and exits as it did (same code, or the same signal), and it
//! watches a pipe whose write end only the worker holds: when the worker
//! dies — even by `kill -9` — the pipe reports end of file and the
//! supervisor kills its whole process group, the command and every process
//! the command started that stayed in the group (a shell script's `sleep`).
//! A process that moves to another group or session (`setsid`, `setpgid`,
//! a daemonising double fork) is not covered.
//!
//! The supervisor's code runs in the forked child of a multi-threaded
//! process, so it uses only async-signal-safe system calls and never
//! allocates; it lives with the crate's other `unsafe` code in `sys`
//! ([`supervise_before_exec`](crate::sys::supervise_before_exec)). This
//! module owns the pipe.

use std::sync::OnceLock;

/// (read end, write end), both close-on-exec; the write end stays open
/// for the life of the worker process.
static DEATH_PIPE: OnceLock<Option<(libc::c_int, libc::c_int)>> = OnceLock::new();

/// The worker's death pipe, made on first use; `None` (with a warning,
/// once) when it cannot be made.
fn death_pipe() -> Option<(libc::c_int, libc::c_int)> {
    *DEATH_PIPE.get_or_init(|| match crate::sys::cloexec_pipe() {
        Ok(fds) => Some(fds),
        Err(error) => {
            tracing::warn!(
                %error,
                "external commands are not supervised: could not create a pipe"
            );
            None
        }
    })
}

/// Makes `cmd` start under a supervisor watching the worker's death pipe
/// (unsupervised when the pipe cannot be made).
pub(super) fn install(cmd: &mut tokio::process::Command) {
    let Some((read_fd, _)) = death_pipe() else {
        return;
    };
    crate::sys::supervise_before_exec(cmd, read_fd);
}
