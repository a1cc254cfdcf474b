//! Two handlers for one task type on one queue are reported at startup with
//! both source locations; the same type on different queues is fine.

use asyncjobs::program::{self, ProgramError, WorkerArgs};
use asyncjobs::{task_handler, HandlerError, Handlers};

#[task_handler("report:build", queue = "REPORTS")]
async fn build_report(name: String) -> Result<String, HandlerError> {
    Ok(name)
}

#[task_handler("report:build", queue = "REPORTS")]
async fn build_report_again(name: String) -> Result<String, HandlerError> {
    Ok(name)
}

#[task_handler("report:build", queue = "OTHER")]
async fn build_report_elsewhere(name: String) -> Result<String, HandlerError> {
    Ok(name)
}

#[test]
fn duplicates_name_both_locations() {
    let err = Handlers::registered().check().unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    let message = err.to_string();
    let first = format!("{}:{}", file!(), 8);
    let second = format!("{}:{}", file!(), 13);
    assert!(
        message.starts_with("duplicate handler for task type \"report:build\" on queue REPORTS: "),
        "{message}"
    );
    assert!(
        message.contains(&format!("duplicates::build_report at {first}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("duplicates::build_report_again at {second}")),
        "{message}"
    );
}

#[tokio::test]
async fn the_worker_refuses_to_start() {
    // checked before connecting: no server is needed
    let err = program::start(&WorkerArgs::default(), &Handlers::registered())
        .await
        .unwrap_err();
    assert!(matches!(err, ProgramError::Duplicates(_)), "{err}");
    // running only the other queue is fine up to connecting
    let args = WorkerArgs {
        queues: vec!["OTHER".into()],
        url: Some("nats://127.0.0.1:1".into()),
        ..WorkerArgs::default()
    };
    let err = program::start(&args, &Handlers::registered())
        .await
        .unwrap_err();
    assert!(matches!(err, ProgramError::Connect { .. }), "{err}");
    // explicit registration reports the same
    let err = Handlers::new()
        .with(build_report::HANDLER)
        .with(build_report_again::HANDLER)
        .check()
        .unwrap_err();
    assert_eq!(err.0[0].first.name(), build_report::HANDLER.name());
    assert!(asyncjobs::Router::new()
        .register(build_report::HANDLER)
        .unwrap()
        .register(build_report_again::HANDLER)
        .is_err());
}
