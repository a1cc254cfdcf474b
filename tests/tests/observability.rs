//! Lifecycle events, metrics and trace context.

use asyncjobs::events::Event;
use asyncjobs::{Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, fast_retry, wait_for_state, NatsServer};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(15);

#[tokio::test]
async fn watch_sees_new_active_complete_for_one_task() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("OBS")).await;
    let mut task = Task::new("t", &1).unwrap();
    let mut events = client.watch_task(&task.id).await.unwrap();
    let mut all = client.watch_events().await.unwrap();
    let router = Router::new()
        .handle("t", |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&"ok")
        })
        .unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(
        client
            .worker(router)
            .retry_policy(fast_retry())
            .run(stop.clone()),
    );
    client.enqueue(&mut task).await.unwrap();
    let mut states = Vec::new();
    while states.last() != Some(&TaskState::Complete) {
        match tokio::time::timeout(T, events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Event::TaskState(e) => {
                assert_eq!(e.task_id, task.id);
                assert_eq!(e.queue, "OBS");
                assert_eq!(e.task_type, "t");
                states.push(e.state);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        states,
        vec![TaskState::New, TaskState::Active, TaskState::Complete]
    );
    // the all-events stream saw them too
    let first = tokio::time::timeout(T, all.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first, Event::TaskState(e) if e.state == TaskState::New));
    stop.cancel();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn traceparent_set_at_enqueue_reaches_the_handler() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("TRACE")).await;
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let s = seen.clone();
    let router = Router::new()
        .handle("t", move |ctx: TaskContext, _t: Task| {
            s.lock()
                .unwrap()
                .push(ctx.traceparent().map(str::to_string));
            async move { asyncjobs::handler::to_output(&()) }
        })
        .unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(
        client
            .worker(router)
            .retry_policy(fast_retry())
            .run(stop.clone()),
    );
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut traced = Task::builder("t").traceparent(tp).build().unwrap();
    client.enqueue(&mut traced).await.unwrap();
    wait_for_state(&client, &traced.id, TaskState::Complete, T).await;
    let mut plain = Task::new("t", &()).unwrap();
    client.enqueue(&mut plain).await.unwrap();
    wait_for_state(&client, &plain.id, TaskState::Complete, T).await;
    assert_eq!(*seen.lock().unwrap(), vec![Some(tp.to_string()), None]);
    stop.cancel();
    worker.await.unwrap().unwrap();
}

fn metric_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.starts_with(name) && l.contains(labels) && l[name.len()..].starts_with(['{', ' '])
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_processing() {
    let server = NatsServer::start();
    let client = client(&server, Queue::new("METRICS")).await;
    let router = Router::new()
        .handle("m:ok", |_ctx: TaskContext, _t: Task| async move {
            asyncjobs::handler::to_output(&())
        })
        .unwrap()
        .handle("m:fail", |_ctx: TaskContext, _t: Task| async move {
            Err(asyncjobs::terminate("no"))
        })
        .unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(
        client
            .worker(router)
            .retry_policy(fast_retry())
            .run(stop.clone()),
    );
    for _ in 0..3 {
        let mut t = Task::new("m:ok", &()).unwrap();
        client.enqueue(&mut t).await.unwrap();
        wait_for_state(&client, &t.id, TaskState::Complete, T).await;
    }
    let mut f = Task::new("m:fail", &()).unwrap();
    client.enqueue(&mut f).await.unwrap();
    wait_for_state(&client, &f.id, TaskState::Terminated, T).await;
    let text = asyncjobs::metrics::render();
    assert_eq!(
        metric_value(
            &text,
            "choria_asyncjobs_queue_enqueue_count",
            r#"queue="METRICS""#
        ),
        Some(4.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "choria_asyncjobs_handler_runtime_count",
            r#"queue="METRICS",type="m:ok""#
        ),
        Some(3.0)
    );
    assert!(metric_value(
        &text,
        "choria_asyncjobs_handler_runtime_sum",
        r#"type="m:ok""#
    )
    .is_some());
    assert!(
        text.contains("# TYPE choria_asyncjobs_handler_runtime summary"),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "choria_asyncjobs_handler_error_total",
            r#"queue="METRICS",type="m:fail""#
        ),
        Some(1.0)
    );
    assert!(
        metric_value(
            &text,
            "choria_asyncjobs_task_update_total",
            r#"state="complete""#
        )
        .unwrap()
            >= 3.0
    );
    // the application's own registry can carry them
    let mine = prometheus::Registry::new();
    asyncjobs::metrics::register_in(&mine).unwrap();
    assert!(mine
        .gather()
        .iter()
        .any(|f| f.name() == "choria_asyncjobs_handler_runtime"));
    stop.cancel();
    worker.await.unwrap().unwrap();
}

async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    // the server may close with our request's tail unread, which the
    // kernel reports as a reset after its answer: the end of the answer
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => break,
            Err(e) => panic!("reading the metrics answer: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn metrics_are_served_over_http_until_stopped() {
    asyncjobs::metrics::registry(); // the metrics exist before the first scrape
    let stop = CancellationToken::new();
    let (addr, server) = asyncjobs::metrics::serve("127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    assert_ne!(addr.port(), 0, "the bound port is reported");
    let ok = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
    let head = http(addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let missing = http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let post = http(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    // a taken port is an error, not a silent no-op
    let taken = asyncjobs::metrics::serve(addr, CancellationToken::new()).await;
    assert_eq!(taken.unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
    stop.cancel();
    tokio::time::timeout(T, server).await.unwrap().unwrap();
    // nothing answers there any more, or (the port was taken again by
    // another test's listener) not this metrics server
    if tokio::net::TcpStream::connect(addr).await.is_ok() {
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await
        .unwrap_or_default();
        assert!(!answer.contains("version=0.0.4"), "still serving metrics");
    }
}

/// A subscription the server refuses (a permissions violation) does not end
/// it, so no loop sees it: the connection's error is counted in
/// `background_error_total{loop="connection"}` (and logged at WARN).
#[tokio::test]
async fn a_refused_subscription_is_counted() {
    let server = NatsServer::start_with_config(
        "authorization { users = [ { user: \"w\", password: \"p\", permissions: { subscribe: { deny: [\"CHORIA_AJ.E.>\"] } } } ] }\nno_auth_user: \"w\"\n",
    );
    let client = asyncjobs::Client::builder()
        .url(server.url())
        .no_storage_init()
        .build()
        .await
        .unwrap();
    let counted = || {
        let text = asyncjobs::metrics::render();
        metric_value(
            &text,
            "choria_asyncjobs_background_error_total",
            "loop=\"connection\"",
        )
        .unwrap_or(0.0)
    };
    let before = counted();
    let _events = client.watch_events().await.unwrap();
    asyncjobs_tests::wait_for(T, "the refusal counted", || async {
        (counted() > before).then_some(())
    })
    .await;
}
