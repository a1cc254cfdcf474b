//! The email worker: every `#[task_handler]` of `asyncjobs_examples::email`
//! run by the entrypoint `asyncjobs::main!()` generates.
//!
//! ```sh
//! cargo run -p asyncjobs-examples --bin email-worker -- --help
//! cargo run -p asyncjobs-examples --bin email-worker -- --list-handlers
//! NATS_URL=nats://127.0.0.1:4222 cargo run -p asyncjobs-examples --bin email-worker
//! ```
//!
//! The handlers live in this package's library so the producer can use their
//! typed `enqueue` helpers; naming the library in `main!` links it in, which
//! registers its handlers.

asyncjobs::main!(asyncjobs_examples);
