//! Queue settings declared by handlers: merged, applied, compared.

#[test]
fn declared_settings_are_compared_with_the_queue() {
    use std::time::Duration;
    let declared = QueueSettings {
        max_run_time: Some(Duration::from_secs(600)),
        max_tries: Some(0),
        max_concurrent: Some(20),
    };
    let mut q = Queue::new("REPORTS")
        .max_run_time(Duration::from_secs(600))
        .max_concurrent(20);
    q.max_tries = -1;
    assert!(declared.differences(&q).is_empty());
    let other = Queue::new("REPORTS")
        .max_run_time(Duration::from_secs(3600))
        .max_concurrent(100)
        .max_tries(5);
    assert_eq!(
        declared.differences(&other),
        [
            "queue_run_time declared 10m0s, the queue has 1h0m0s",
            "queue_max_tries declared 0, the queue has 5 (0: unlimited)",
            "queue_concurrency declared 20, the queue has 100",
        ]
    );
    assert!(QueueSettings::default().differences(&other).is_empty());
}

use super::*;
use crate::handler::HandlerError;

#[crate::task_handler("reg:plain", crate = "crate")]
async fn plain(n: u8) -> std::result::Result<u8, HandlerError> {
    Ok(n)
}

#[crate::task_handler(
    "reg:set",
    queue = "REG_SET",
    queue_run_time = "10m",
    queue_max_tries = 0,
    queue_concurrency = 3,
    crate = "crate"
)]
async fn set(n: u8) -> std::result::Result<u8, HandlerError> {
    Ok(n)
}

#[crate::task_handler("reg:same", queue = "REG_SET", queue_run_time = "10m", crate = "crate")]
async fn same(n: u8) -> std::result::Result<u8, HandlerError> {
    Ok(n)
}

#[test]
fn queue_defaults_and_declared_settings() {
    let handlers = Handlers::new()
        .with(plain::HANDLER)
        .with(set::HANDLER)
        .with(same::HANDLER);
    // nothing declared: Go's defaults for DEFAULT, the creation defaults otherwise
    assert_eq!(handlers.queue("DEFAULT").unwrap(), Queue::default_queue());
    assert_eq!(handlers.queue("OTHER").unwrap(), Queue::new("OTHER"));
    // declared, and agreeing where two handlers say the same
    let q = handlers.queue("REG_SET").unwrap();
    assert_eq!(q.max_run_time, Duration::from_secs(600));
    assert_eq!(q.max_tries, 0);
    assert_eq!(q.max_concurrent, 3);
    assert_eq!(
        set::HANDLER.queue_settings(),
        QueueSettings {
            max_run_time: Some(Duration::from_secs(600)),
            max_tries: Some(0),
            max_concurrent: Some(3),
        }
    );
    assert!(plain::HANDLER.queue_settings().is_empty());
}

#[crate::task_handler("reg:timed", timeout = "1m30s", crate = "crate")]
async fn timed(n: u8) -> std::result::Result<u8, HandlerError> {
    Ok(n)
}

#[test]
fn a_declared_timeout_reaches_the_router() {
    use std::time::Duration;
    assert_eq!(timed::TIMEOUT, Some(Duration::from_secs(90)));
    assert_eq!(timed::HANDLER.timeout(), Some(Duration::from_secs(90)));
    assert_eq!(plain::TIMEOUT, None);
    let router = Router::new()
        .register(timed::HANDLER)
        .unwrap()
        .register(plain::HANDLER)
        .unwrap();
    assert_eq!(
        router.timeout_for("reg:timed"),
        Some(Duration::from_secs(90))
    );
    assert_eq!(router.timeout_for("reg:plain"), None);
}

/// The program's handler listing shows a declared time-out.
#[cfg(feature = "program")]
#[test]
fn the_handler_listing_shows_a_declared_timeout() {
    let table = crate::program::handler_table(&Handlers::new().with(timed::HANDLER));
    assert!(table.contains("timeout=1m30s"), "{table}");
}
