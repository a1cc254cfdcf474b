//! The web dashboard in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver with fantoccini) against `ajc
//! server run`, a real nats-server and a running worker: pages load without
//! script errors, a task enqueued meanwhile appears and turns complete
//! without a reload, a failed task's retry button re-runs it, a filtered
//! bulk retry re-enqueues exactly the matching tasks, read-only mode
//! refuses actions, a task cancelled from its page never runs, a queue
//! paused and resumed from the overview holds a
//! task back and then runs it, pages fit a phone's width. Flow control
//! (issue 32): a task's priority and key in the task list (live and
//! rendered) and on its page, a batch's page (its counts reaching done,
//! its retry re-running the failed member and the callback, its cancel
//! stopping a running member), a queue's rate limit, key limits and
//! priority aging set and removed through the overview's Configure form,
//! shown in its Flow column and reported by the HTTP API. The workers
//! page (issue 33): a worker's tries and a queue pulled only by a worker
//! that does not announce itself; a schedule's next fire time, its "Run
//! now", its pause and resume.
//!
//! One test binary: `browser.rs` holds the Chromium session and the
//! helpers, each other file a part of the dashboard.
//!
//! `UPDATE_SCREENSHOTS=1` writes the overview, task list, task page and
//! workers page to `docs/` (shown in the README).

#[path = "../support/mod.rs"]
mod support;

mod access;
mod browser;
mod bulk;
mod flow;
mod history;
mod pages;
