//! The library's handlers, private payload types included, from another
//! crate: only what the library exports is used (issue 29).

use asyncjobs_handler_tests::{handlers, public};

#[test]
fn private_handlers_are_registered_through_the_library() {
    let mut types: Vec<_> = handlers().iter().map(|h| h.task_type()).collect();
    types.sort_unstable();
    assert_eq!(types, ["lib:archive", "lib:cleanup", "lib:reindex"]);
    let mut all = asyncjobs::Handlers::new();
    for h in handlers() {
        all = all.with(h);
    }
    all.check().unwrap();
}

#[test]
fn public_handler_helpers_are_usable_outside_the_library() {
    let task = public::archive::task(&public::Archive { path: "/a".into() })
        .build()
        .unwrap();
    assert_eq!(task.task_type, "lib:archive");
    assert_eq!(public::archive::QUEUE, "LIB");
    let _: public::archive::Payload = public::Archive { path: "/b".into() };
    let _ = public::archive::enqueue;
}
