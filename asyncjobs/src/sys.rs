//! Every `unsafe` of the crate, behind safe functions: for external
//! commands (feature `remote`), signalling a process group, the
//! close-on-exec pipe the command supervisor watches, and the supervisor's
//! own code, which runs in the forked child before `exec`.
//!
//! The crate root denies `unsafe_code` everywhere else. Each `unsafe` block
//! here carries its `SAFETY:` argument; what the functions promise is in
//! their docs, and no caller has a precondition to keep.

/// Sends SIGKILL to the process group `pgid` (the group a child started
/// with `process_group(0)` leads; its id is the child's pid). Errors (the
/// group is gone already) are ignored.
#[cfg(all(unix, feature = "remote"))]
pub(crate) fn kill_process_group(pgid: u32) {
    signal_process_group(pgid, libc::SIGKILL);
}

/// Sends SIGTERM to the process group `pgid`, asking its processes to
/// end. Errors (the group is gone already) are ignored.
#[cfg(all(unix, feature = "remote"))]
pub(crate) fn terminate_process_group(pgid: u32) {
    signal_process_group(pgid, libc::SIGTERM);
}

/// True while the process group `pgid` has a member, zombies that no one
/// has reaped yet included (a null signal is sent to it).
#[cfg(all(unix, feature = "remote"))]
pub(crate) fn process_group_exists(pgid: u32) -> bool {
    signal_process_group(pgid, 0)
}

/// Sends `sig` (0: none, only the check) to the process group `pgid`; true
/// when the group exists (the signal went out, or it exists but we may not
/// signal it).
#[cfg(all(unix, feature = "remote"))]
fn signal_process_group(pgid: u32, sig: libc::c_int) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        // -1 and -0 would address every process or our own group
        return false;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid
    // addresses the process group `-pid`.
    if unsafe { libc::kill(-pgid, sig) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A new pipe, both ends close-on-exec: (read end, write end). The caller
/// owns both descriptors.
#[cfg(all(target_os = "linux", feature = "remote"))]
pub(crate) fn cloexec_pipe() -> std::io::Result<(libc::c_int, libc::c_int)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the two-element array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// Makes the process `cmd` spawns a supervisor of the command: between
/// fork and exec it forks once more; the new child goes on to exec the
/// command, and the spawned process stays behind, never execs, exits as
/// the command did (same code, or the same signal), and kills its whole
/// process group as soon as `watch_fd` (a pipe's read end whose write end
/// only the worker holds) reports end of file or an error: the worker is
/// gone. See `remote::supervisor` for why.
#[cfg(all(target_os = "linux", feature = "remote"))]
pub(crate) fn supervise_before_exec(cmd: &mut tokio::process::Command, watch_fd: libc::c_int) {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed; `supervisor::start` makes
    // nothing else (no allocation, no lock, no Rust I/O).
    unsafe {
        cmd.pre_exec(move || supervisor::start(watch_fd));
    }
}

/// The supervisor's code, in the child of a multi-threaded process between
/// fork and exec: async-signal-safe system calls only, no allocation.
#[cfg(all(target_os = "linux", feature = "remote"))]
mod supervisor {
    use std::io;

    /// How often the supervisor looks at the worker's pipe while the
    /// command runs (it notices the command's exit at once).
    const WATCH_NS: libc::c_long = 100_000_000;

    /// Forks: the fork returns `Ok` and goes on to exec the command; this
    /// process supervises it and never returns.
    pub(super) fn start(watch_fd: libc::c_int) -> io::Result<()> {
        let mut chld = empty_signal_set();
        add_signal(&mut chld, libc::SIGCHLD);
        let mut old = empty_signal_set();
        // blocked before the fork so the command's exit cannot be missed
        // SAFETY: both sets are initialised sigset_t values owned here.
        if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &chld, &mut old) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the caller runs between fork and exec; the fork continues
        // with async-signal-safe calls only, as this function does.
        let command = unsafe { libc::fork() };
        if command < 0 {
            return Err(io::Error::last_os_error());
        }
        if command == 0 {
            // SAFETY: `old` is the initialised mask saved above; a null
            // old-set pointer is allowed.
            unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
            return Ok(());
        }
        // The supervisor keeps only the pipe's read end: without the write
        // end the pipe ends when the worker dies; without stdout, stderr
        // and the spawn's error pipe, the worker sees those end when the
        // command (not the supervisor) closes them.
        close_all_but(watch_fd);
        watch(command, watch_fd, &chld)
    }

    /// Waits for the command (pid `command`) while watching `watch_fd`.
    fn watch(command: libc::pid_t, watch_fd: libc::c_int, chld: &libc::sigset_t) -> ! {
        let wait = libc::timespec {
            tv_sec: 0,
            tv_nsec: WATCH_NS,
        };
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: `status` is a valid, writable int.
            let r = unsafe { libc::waitpid(command, &mut status, libc::WNOHANG) };
            if r == command {
                exit_as(status);
            }
            // SAFETY: __errno_location returns this thread's errno slot,
            // valid to read for the life of the thread.
            if r < 0 && unsafe { *libc::__errno_location() } != libc::EINTR {
                exit(127);
            }
            let mut pfd = libc::pollfd {
                fd: watch_fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid pollfd, and the count says one.
            if unsafe { libc::poll(&mut pfd, 1, 0) } > 0 {
                // the worker is gone (or the pipe broke): end the group,
                // this supervisor included
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(0, libc::SIGKILL) };
                exit(137);
            }
            // SAFETY: `chld` is an initialised set and `wait` a valid
            // timespec; a null siginfo pointer is allowed.
            unsafe { libc::sigtimedwait(chld, std::ptr::null_mut(), &wait) };
        }
    }

    /// Closes every descriptor but `keep`.
    fn close_all_but(keep: libc::c_int) {
        for (from, to) in [(0, keep - 1), (keep + 1, libc::c_int::MAX)] {
            if from > to {
                continue;
            }
            // SAFETY: close_range(2) takes plain integers; closing
            // descriptors cannot break memory safety in this process,
            // which runs no Rust code that uses them before exec or exit.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    from as libc::c_uint,
                    to as libc::c_uint,
                    0,
                )
            };
            if rc != 0 {
                // kernels before 5.9
                for fd in from..=to.min(65_535) {
                    // SAFETY: as for close_range above.
                    unsafe { libc::close(fd) };
                }
            }
        }
    }

    /// Ends the supervisor the way the command ended.
    fn exit_as(status: libc::c_int) -> ! {
        if libc::WIFEXITED(status) {
            exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            // SAFETY: sigaction is plain data for which all-zero bytes are
            // a valid value (no handler, empty mask, no flags).
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = libc::SIG_DFL;
            // SAFETY: `action` is a valid sigaction; a null old-action
            // pointer is allowed.
            unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
            let mut set = empty_signal_set();
            add_signal(&mut set, sig);
            // SAFETY: `set` is an initialised set; a null old-set pointer
            // is allowed.
            unsafe { libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
            // SAFETY: getpid and kill(2) have no memory-safety
            // preconditions.
            unsafe { libc::kill(libc::getpid(), sig) };
            exit(128 + sig);
        }
        exit(127)
    }

    /// An empty signal set.
    fn empty_signal_set() -> libc::sigset_t {
        // SAFETY: sigset_t is plain data for which all-zero bytes are a
        // valid value, and sigemptyset initialises the set it is given.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            set
        }
    }

    /// Adds `sig` to `set`.
    fn add_signal(set: &mut libc::sigset_t, sig: libc::c_int) {
        // SAFETY: `set` is an initialised, writable sigset_t.
        unsafe { libc::sigaddset(set, sig) };
    }

    /// Ends the process at once with `code`, running no exit handlers.
    fn exit(code: libc::c_int) -> ! {
        // SAFETY: _exit(2) is async-signal-safe and has no preconditions.
        unsafe { libc::_exit(code) }
    }
}
