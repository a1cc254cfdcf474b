//! The email worker with middleware: every task is logged when it starts
//! and ends, with how long its handler took (see
//! `asyncjobs_examples::timing`).
//!
//! ```sh
//! cargo run -p asyncjobs-examples --bin timed-worker -- --retry-policy 1m
//! cargo run -p asyncjobs-examples --bin email-producer -- 3
//! ```

use asyncjobs::router::from_fn;
use asyncjobs_examples::timing::log_and_time;

asyncjobs::main!(asyncjobs_examples, middleware = from_fn(log_and_time));
