//! Unit tests of the worker program: flags, listing, the checks made
//! before connecting.

use super::logging::log_directives;
use super::*;
use crate::connect::Connect;
use crate::registry::{Handlers, QueueSettings};
use std::process::ExitCode;
use std::time::Duration;

mod jobs {
    use crate::{HandlerError, State};

    #[derive(Clone)]
    pub(super) struct Db;

    #[crate::task_handler("rt:stateful", queue = "RT_STATE", crate = "crate")]
    pub(super) async fn stateful(State(_db): State<Db>, n: u8) -> Result<u8, HandlerError> {
        Ok(n)
    }

    #[crate::task_handler("rt:a", queue = "RT_CONFLICT", queue_run_time = "5m", crate = "crate")]
    pub(super) async fn a(n: u8) -> Result<u8, HandlerError> {
        Ok(n)
    }

    #[crate::task_handler("rt:b", queue = "RT_CONFLICT", queue_run_time = "10m", crate = "crate")]
    pub(super) async fn b(n: u8) -> Result<u8, HandlerError> {
        Ok(n)
    }
}

fn unreachable_server() -> WorkerArgs {
    WorkerArgs {
        url: Some("nats://127.0.0.1:1".into()),
        ..WorkerArgs::default()
    }
}

#[test]
fn no_handlers_names_the_fix() {
    let e = App::new()
        .__program(Some("my-shop"), &[])
        .no_handlers()
        .to_string();
    assert!(e.starts_with("no task handlers registered"), "{e}");
    assert!(e.contains("`asyncjobs::main!(my_shop);`"), "{e}");
    let e = App::new().no_handlers().to_string();
    assert!(e.contains("`asyncjobs::main!(your_lib_crate);`"), "{e}");
    let e = App::new()
        .__program(Some("shop"), &["shop"])
        .no_handlers()
        .to_string();
    assert!(
        e.ends_with("the crates named in asyncjobs::main!(shop) declare none"),
        "{e}"
    );
}

#[test]
fn listing_no_handlers_fails() {
    let args = WorkerArgs {
        list_handlers: true,
        ..WorkerArgs::default()
    };
    let code = App::new().handlers(Handlers::new()).main_with(args.clone());
    assert_eq!(code, ExitCode::FAILURE);
    let code = App::new()
        .handlers(Handlers::new().with(jobs::a::HANDLER))
        .main_with(args);
    assert_eq!(code, ExitCode::SUCCESS);
}

#[tokio::test]
async fn missing_states_and_conflicting_queue_settings_stop_the_start() {
    // both are checked before connecting: no server is needed
    let handlers = Handlers::new().with(jobs::stateful::HANDLER);
    let err = App::new()
        .handlers(handlers.clone())
        .start(&unreachable_server())
        .await
        .unwrap_err();
    assert!(matches!(err, ProgramError::MissingStates(_)), "{err}");
    let e = err.to_string();
    assert!(
        e.contains("jobs::stateful (task type \"rt:stateful\"")
            && e.contains("takes State<asyncjobs::program::tests::jobs::Db>"),
        "{e}"
    );
    let err = App::new()
        .handlers(handlers)
        .state(jobs::Db)
        .start(&unreachable_server())
        .await
        .unwrap_err();
    assert!(matches!(err, ProgramError::Connect { .. }), "{err}");

    let handlers = Handlers::new()
        .with(jobs::a::HANDLER)
        .with(jobs::b::HANDLER);
    let err = App::new()
        .handlers(handlers)
        .start(&unreachable_server())
        .await
        .unwrap_err();
    let e = err.to_string();
    assert!(
        e.contains("handlers on queue RT_CONFLICT declare different queue_run_time")
            && e.contains("says 5m")
            && e.contains("says 10m"),
        "{e}"
    );
}

#[test]
fn the_table_shows_settings_and_states() {
    let table = handler_table(
        &Handlers::new()
            .with(jobs::a::HANDLER)
            .with(jobs::stateful::HANDLER),
    );
    assert!(table.contains("queue_run_time=5m"), "{table}");
    assert!(table.contains("State<Db>"), "{table}");
}

#[test]
fn durations() {
    // the grammar itself is tested in wire; here: the flag uses it
    let a = WorkerArgs::try_from_args(["worker", "--shutdown-grace", "1.5m"]).unwrap();
    assert_eq!(a.shutdown_grace, Duration::from_secs(90));
    let e = WorkerArgs::try_from_args(["worker", "--shutdown-grace", "1d"]).unwrap_err();
    assert!(e.to_string().contains("expected a Go duration"), "{e}");
    assert!(WorkerArgs::try_from_args(["worker", "--shutdown-grace", "-1s"]).is_err());
}

#[test]
fn defaults_match_the_flags() {
    let parsed = WorkerArgs::try_from_args(["worker"]).unwrap();
    // the environment may set NATS_URL and friends; compare the rest
    let expected = WorkerArgs {
        url: parsed.url.clone(),
        context: parsed.context.clone(),
        ..WorkerArgs::default()
    };
    if std::env::vars().all(|(k, _)| !k.starts_with("ASYNCJOBS_")) {
        assert_eq!(parsed, expected);
    }
    assert!(WorkerArgs::try_from_args(["worker", "--concurrency", "0"]).is_err());
    assert_eq!(
        WorkerArgs::try_from_args(["worker", "--handler-threads", "0"])
            .unwrap()
            .handler_threads,
        Some(0)
    );
    assert!(WorkerArgs::try_from_args(["worker", "--handler-threads", "-1"]).is_err());
    assert!(WorkerArgs::try_from_args(["worker", "--retry-policy", "weekly"]).is_err());
    assert!(WorkerArgs::try_from_args(["worker", "--log-level", "info,=["]).is_err());
    let a = WorkerArgs::try_from_args([
        "worker",
        "--queue-run-time",
        "10m",
        "--queue-concurrency",
        "5",
    ])
    .unwrap();
    let declared = QueueSettings {
        max_run_time: Some(Duration::from_secs(60)),
        max_tries: Some(3),
        max_concurrent: None,
    };
    assert_eq!(
        a.queue_overrides(declared),
        QueueSettings {
            max_run_time: Some(Duration::from_secs(600)),
            max_tries: Some(3),
            max_concurrent: Some(5),
        }
    );
    for bad in [
        ["--queue-run-time", "10ms"],
        ["--queue-concurrency", "0"],
        ["--queue-max-tries", "-1"],
    ] {
        assert!(
            WorkerArgs::try_from_args(["worker", bad[0], bad[1]]).is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(
        log_directives("debug"),
        "debug,async_nats=warn,hyper=warn,h2=warn,tower=warn,rustls=warn,mio=warn"
    );
    assert_eq!(log_directives("warn"), "warn");
    assert_eq!(log_directives("error"), "error");
    assert_eq!(
        log_directives("debug,async_nats=debug"),
        "debug,async_nats=debug"
    );
    let a = WorkerArgs::try_from_args(["worker", "--queue", "A,B", "--queue", "C"]).unwrap();
    assert_eq!(a.queues, vec!["A", "B", "C"]);
}

#[test]
fn the_help_shows_the_default_url() {
    use clap::CommandFactory;
    let help = WorkerArgs::command().render_help().to_string();
    assert!(help.contains(connect::DEFAULT_URL), "{help}");
}

#[test]
fn connection_settings() {
    let mut a = WorkerArgs::default();
    assert_eq!(a.server(), connect::DEFAULT_URL);
    a.url = Some("nats://a:1,nats://b:2".into());
    assert_eq!(a.server(), "nats://a:1,nats://b:2");
    a.context = Some("prod".into());
    assert_eq!(a.server(), "NATS context \"prod\"");
    assert_eq!(
        a.connection(),
        Connect::context("prod")
            .name(CONNECTION_NAME)
            .origin("NATS context \"prod\" from --context")
    );
}
