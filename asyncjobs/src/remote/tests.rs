//! Unit tests of the remote handlers' parts that need no server.

use super::command::{stderr_tail, STDERR_LIMIT};
use super::request_reply::deadline_header_value;
use super::server::header_safe;
use super::*;
use crate::handler::{Handler, TaskContext};
use crate::task::Task;

#[test]
fn subjects_and_deadline_header() {
    assert_eq!(subject_for("a:b"), "CHORIA_AJ.H.T.a:b");
    assert_eq!(subject_for(""), "CHORIA_AJ.H.T.catchall");
    let d = time::macros::datetime!(2022-02-09 17:34:33.987654321 UTC);
    assert_eq!(deadline_header_value(d), "2022-02-09T17:34:31Z");
    let d = time::macros::datetime!(2022-02-09 19:34:33.5 +02:00);
    assert_eq!(deadline_header_value(d), "2022-02-09T17:34:31Z");
}

#[test]
fn stderr_is_trimmed_and_bounded() {
    assert_eq!(stderr_tail(b"  boom\n"), "boom");
    let long = "é".repeat(STDERR_LIMIT);
    let tail = stderr_tail(long.as_bytes());
    assert!(tail.starts_with('…'));
    assert!(tail.len() <= STDERR_LIMIT + '…'.len_utf8());
    assert_eq!(header_safe("a\r\nb".into()), "a  b");
    assert_eq!(header_safe(" ".into()), "handler failed");
}

#[tokio::test]
async fn request_reply_needs_a_deadline() {
    let task = Task::new("t", &1).unwrap();
    let ctx = TaskContext::detached(task.clone());
    // never connects: the deadline check comes first
    let nc = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("nats://127.0.0.1:1")
        .await
        .unwrap();
    let err = RequestReply::new(nc, "t")
        .call(ctx, task)
        .await
        .unwrap_err();
    assert_eq!(err.message(), "request-reply requires deadline context");
    assert!(!err.is_terminate());
}
