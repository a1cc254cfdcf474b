//! Schedules declared in code (issue 31, docs/processing.md §2.20) against a
//! real nats-server: a `#[task_handler(cron = ...)]` schedule fires with
//! only the worker `asyncjobs::main!()` runs; many workers starting at once
//! store one schedule; a different schedule an operator stored under the
//! name is kept with a warning; `main!(schedule = ...)` carries a payload
//! and an invalid one stops the start.

use asyncjobs::program::{self, App, ProgramError, WorkerArgs};
use asyncjobs::scheduler::Declaration;
use asyncjobs::{Client, HandlerError, Handlers, ScheduledTask, Task};
use asyncjobs_tests::{wait_for, NatsServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

static TICKS: AtomicUsize = AtomicUsize::new(0);
static PAYLOADS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

mod jobs {
    use super::*;

    #[asyncjobs::task_handler("tick:second", queue = "TICKS", cron = "@every 1s")]
    pub async fn tick(_nothing: ()) -> Result<(), HandlerError> {
        TICKS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[asyncjobs::task_handler("report:daily", queue = "REPORTS", cron = "0 3 * * *")]
    pub async fn daily(_nothing: Option<String>) -> Result<(), HandlerError> {
        Ok(())
    }

    #[asyncjobs::task_handler("report:weekly", queue = "REPORTS")]
    pub async fn weekly(format: String) -> Result<(), HandlerError> {
        PAYLOADS.lock().unwrap().push(format);
        Ok(())
    }
}

fn args(server: &NatsServer) -> WorkerArgs {
    WorkerArgs {
        url: Some(server.url()),
        shutdown_grace: Duration::from_secs(5),
        ..WorkerArgs::default()
    }
}

async fn client(server: &NatsServer) -> Client {
    Client::connect(&server.url()).await.unwrap()
}

/// The only test of this binary that captures logs (one global subscriber
/// per binary): a declared schedule fires with nothing but the worker
/// running, an operator's schedule under a declared name is kept with one
/// WARN naming both, and `main!(schedule = ...)` brings a payload.
#[tokio::test]
async fn a_declared_schedule_fires_with_only_the_worker_running() {
    let log = asyncjobs_tests::capture_logs("asyncjobs=info");
    let server = NatsServer::start();
    // an operator stored report_daily first, with other content
    let c = client(&server).await;
    let operators = ScheduledTask::new(
        "report_daily",
        "30 4 * * *",
        "REPORTS",
        &Task::new("report:daily", &()).unwrap(),
    )
    .unwrap();
    c.create_scheduled_task(&operators).await.unwrap();

    let app = App::new()
        .handlers(
            Handlers::new()
                .with(jobs::tick::HANDLER)
                .with(jobs::daily::HANDLER)
                .with(jobs::weekly::HANDLER),
        )
        .schedule(program::schedule(
            "weekly_pdf",
            "@every 1s",
            jobs::weekly::QUEUE,
            jobs::weekly::task(&"pdf".to_string()),
        ));
    let running = app.start(&args(&server)).await.unwrap();

    // no ajc, no scheduler process: the worker's own scheduler fires it
    wait_for(T, "the declared schedule's task", || async {
        (TICKS.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    wait_for(T, "the main! schedule's task with its payload", || async {
        PAYLOADS
            .lock()
            .unwrap()
            .iter()
            .any(|p| p == "pdf")
            .then_some(())
    })
    .await;
    let stored = c.load_scheduled_task("tick_second").await.unwrap();
    assert_eq!(stored.schedule, "@every 1s");
    assert_eq!(stored.queue, "TICKS");
    assert!(
        stored
            .declared_in
            .as_deref()
            .unwrap()
            .ends_with("jobs::tick"),
        "{stored:?}"
    );
    let weekly = c.load_scheduled_task("weekly_pdf").await.unwrap();
    assert!(
        weekly
            .declared_in
            .as_deref()
            .unwrap()
            .starts_with("asyncjobs::main!"),
        "{weekly:?}"
    );

    // the operator's schedule is kept, and one WARN names both
    let kept = c.load_scheduled_task("report_daily").await.unwrap();
    assert_eq!(kept.schedule, "30 4 * * *");
    assert_eq!(kept.declared_in, None);
    let warned = log.lines_with("not declared in code is stored with other content");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        warned[0].contains("WARN")
            && warned[0].contains("report_daily")
            && warned[0].contains("\"30 4 * * *\"")
            && warned[0].contains("\"0 3 * * *\"")
            && warned[0].contains("ajc task cron rm report_daily"),
        "{}",
        warned[0]
    );
    running.stop().await.unwrap();

    // a worker with --no-scheduler, and no scheduler left: one WARN says
    // the stored schedules do not fire
    let quiet = App::new()
        .handlers(Handlers::new().with(jobs::tick::HANDLER))
        .start(&WorkerArgs {
            no_scheduler: true,
            ..args(&server)
        })
        .await
        .unwrap();
    let unfired = wait_for(T, "the unfired schedules warning", || async {
        let lines = log.lines_with("no process runs a task scheduler, so none fires");
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert!(
        unfired[0].contains("WARN")
            && unfired[0].contains("tick_second")
            && unfired[0].contains("--no-scheduler"),
        "{}",
        unfired[0]
    );
    quiet.stop().await.unwrap();
}

#[tokio::test]
async fn many_workers_declaring_at_once_store_one_schedule() {
    let server = NatsServer::start();
    let c = client(&server).await;
    let declared = jobs::daily::HANDLER.declared_schedule().unwrap().unwrap();
    let outcomes = futures::future::join_all((0..12).map(|_| {
        let c = c.clone();
        let d = declared.clone();
        async move { c.declare_scheduled_task(&d).await.unwrap() }
    }))
    .await;
    let created = outcomes
        .iter()
        .filter(|o| **o == Declaration::Created)
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Declaration::Created | Declaration::Unchanged)),
        "{outcomes:?}"
    );
    let all = c.scheduled_tasks().await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].same_tasks_as(&declared));

    // as many workers starting at once
    let starts = futures::future::join_all((0..4).map(|_| async {
        App::new()
            .handlers(Handlers::new().with(jobs::daily::HANDLER))
            .start(&WorkerArgs {
                no_scheduler: true,
                ..args(&server)
            })
            .await
            .unwrap()
    }))
    .await;
    for running in starts {
        running.stop().await.unwrap();
    }
    assert_eq!(c.scheduled_tasks().await.unwrap().len(), 1);

    // a changed declaration (a new deploy) replaces the stored one
    let mut changed = declared.clone();
    changed.schedule = "0 4 * * *".into();
    match c.declare_scheduled_task(&changed).await.unwrap() {
        Declaration::Updated { previous } => assert_eq!(previous.schedule, "0 3 * * *"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.load_scheduled_task("report_daily")
            .await
            .unwrap()
            .schedule,
        "0 4 * * *"
    );
}

#[tokio::test]
async fn an_invalid_main_schedule_stops_the_start_naming_it() {
    let server = NatsServer::start();
    let e = App::new()
        .handlers(Handlers::new().with(jobs::weekly::HANDLER))
        .schedule(program::schedule(
            "weekly_pdf",
            "0 3 * * 7",
            "REPORTS",
            jobs::weekly::task(&"pdf".to_string()),
        ))
        .start(&args(&server))
        .await
        .unwrap_err();
    assert!(matches!(e, ProgramError::Schedule { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("cannot declare schedule #1 of asyncjobs::main!")
            && text.contains("above maximum"),
        "{text}"
    );
    // nothing stored
    let c = client(&server).await;
    assert!(c.scheduled_tasks().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_undecodable_record_under_a_declared_name_is_kept() {
    let server = NatsServer::start();
    let c = client(&server).await;
    // written as any NATS client can: straight onto the bucket's subject
    c.nats()
        .publish(
            "$KV.CHORIA_AJ_CONFIGURATION.scheduled_tasks.weekly_pdf",
            "not a schedule".into(),
        )
        .await
        .unwrap();
    c.nats().flush().await.unwrap();
    wait_for(T, "the record to be stored", || async {
        matches!(
            c.load_scheduled_task("weekly_pdf").await,
            Err(asyncjobs::ScheduleError::InvalidRecord { .. })
        )
        .then_some(())
    })
    .await;
    let running = App::new()
        .handlers(Handlers::new().with(jobs::weekly::HANDLER))
        .schedule(program::schedule(
            "weekly_pdf",
            "0 3 * * 1",
            "REPORTS",
            jobs::weekly::task(&"pdf".to_string()),
        ))
        .start(&WorkerArgs {
            no_scheduler: true,
            ..args(&server)
        })
        .await
        .expect("the worker starts, leaving the record alone");
    assert!(matches!(
        c.load_scheduled_task("weekly_pdf").await,
        Err(asyncjobs::ScheduleError::InvalidRecord { .. })
    ));
    running.stop().await.unwrap();
}
