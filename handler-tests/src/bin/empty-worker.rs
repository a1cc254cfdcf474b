//! A worker whose `asyncjobs::main!()` registers no handler, like a binary
//! whose handlers live in its package's library but that does not name it:
//! `tests/programs.rs` checks that it refuses to run and says how to fix it.

asyncjobs::main!();
