//! A worker made of `#[task_handler]` functions and `asyncjobs::main!()`;
//! `tests/worker.rs` runs it against a real nats-server.

mod handlers;

asyncjobs::main!();
