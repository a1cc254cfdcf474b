//! The text rules that both [asyncjobs](https://docs.rs/asyncjobs) and its
//! `#[task_handler]` macro apply, written once: Go's duration grammar and
//! the rules for task type and queue names.
//!
//! The runtime checks these rules when a program runs; the macro checks the
//! same rules at compile time, on the literals of the attribute. A
//! procedural-macro crate cannot depend on the runtime, so the rules live
//! here and both depend on this crate (as `sqlx-macros-core` serves `sqlx`).
//!
//! This crate is an implementation detail: use the runtime's paths
//! (`asyncjobs::parse_duration`, `asyncjobs::format_duration`,
//! `asyncjobs::parse_signed_duration`, `asyncjobs::wire::parse_go_duration`,
//! `asyncjobs::task::is_valid_name`), which call these functions.
//!
//! * [`duration`]: Go's `time.ParseDuration` and `time.Duration.String()`.
//! * [`names`]: task type (and task id) names, queue names.
//! * [`cron`]: the cron spec grammar of the Go scheduler (robfig/cron).
//!
//! ```
//! use asyncjobs_grammar::{format_duration, is_valid_name, is_valid_queue_name, parse_duration};
//! use std::time::Duration;
//!
//! assert_eq!(parse_duration("2h45m"), Ok(Duration::from_secs(9900)));
//! assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
//! assert!(is_valid_name("email:new"));
//! assert!(!is_valid_queue_name("EMAIL.HIGH"));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cron;
pub mod duration;
pub mod names;

pub use duration::{format_duration, parse_duration, parse_go_duration, parse_signed_duration};
pub use names::{check_queue_name, is_valid_name, is_valid_queue_name, DEFAULT_QUEUE_NAME};
