//! trybuild suites for `#[task_handler]`: `ui/pass` must compile (and run),
//! `ui/fail` must fail with exactly the committed `.stderr`.
//!
//! Regenerate the expected output after an intended change with
//! `TRYBUILD=overwrite cargo test -p asyncjobs-handler-tests --test ui`,
//! then read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
