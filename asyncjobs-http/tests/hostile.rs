//! What an unauthenticated client sends cannot crash, hang or starve the
//! server (issue 29): bodies nested without end on every route taking
//! JSON, invented methods, and connections that are slow or silent. Each
//! test serves the router the way `ajc server run` does
//! ([`asyncjobs_http::server::serve_with_limits`]) against a real
//! nats-server, and talks to it over real TCP connections.

use asyncjobs::{Client, Queue};
use asyncjobs_http::server::{serve_with_limits, ConnectionLimits};
use asyncjobs_http::{router, ApiOptions};
use asyncjobs_tests::{wait_for, NatsServer};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How long a normal request may take while the server is under attack.
const PROMPT: Duration = Duration::from_secs(10);

/// Serves the API for `client` on a free loopback port with `limits`
/// until `stop` is cancelled.
async fn serve(client: Client, limits: ConnectionLimits, stop: CancellationToken) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(client, ApiOptions::default());
    tokio::spawn(async move {
        serve_with_limits(listener, app, None, Duration::from_secs(1), stop, limits)
            .await
            .unwrap()
    });
    addr
}

async fn client_for(nats: &NatsServer, queue: &str) -> Client {
    Client::builder()
        .url(nats.url())
        .queue(Queue::new(queue))
        .build()
        .await
        .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(PROMPT).build().unwrap()
}

/// A normal request: creating a task answers 201 within [`PROMPT`].
async fn create_task(addr: SocketAddr) -> reqwest::Response {
    let r = http()
        .post(format!("http://{addr}/v1/tasks"))
        .json(&json!({"type": "normal"}))
        .send()
        .await
        .expect("the server answers a normal request");
    assert_eq!(r.status(), 201);
    r
}

fn deep_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn deep_objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_bodies_are_refused_and_the_server_keeps_serving() {
    let nats = NatsServer::start();
    let client = client_for(&nats, "DEEP").await;
    let stop = CancellationToken::new();
    let addr = serve(client.clone(), ConnectionLimits::default(), stop.clone()).await;
    let http = http();
    let base = format!("http://{addr}");

    // issue 29's body: 200,000 arrays, 400 KB, under the 512 KiB limit
    let arrays = deep_arrays(200_000);
    assert!(arrays.len() < ApiOptions::default().max_body);
    let objects = deep_objects(80_000);
    assert!(objects.len() < ApiOptions::default().max_body);
    let in_payload = format!(r#"{{"type":"x","payload":{}}}"#, deep_arrays(200_000));
    let in_filter = format!(r#"{{"filter":{}}}"#, deep_objects(80_000));
    let just_too_deep = format!(r#"{{"type":"x","payload":{}}}"#, deep_arrays(127));
    let bodies = [
        ("arrays", arrays.as_str()),
        ("objects", objects.as_str()),
        ("payload", in_payload.as_str()),
        ("filter", in_filter.as_str()),
        ("128 deep", just_too_deep.as_str()),
    ];
    for route in [
        "/v1/tasks",
        "/v1/tasks/retry",
        "/v1/queues",
        "/v1/schedules",
    ] {
        for (what, body) in bodies {
            let r = http
                .post(format!("{base}{route}"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{route} {what}: no answer: {e}"));
            assert_eq!(r.status(), 400, "{route} {what}");
            let e: Value = r.json().await.unwrap();
            assert_eq!(
                e,
                json!({"error": {"code": "invalid_argument",
                    "details": {"reason": "invalid_json"},
                    "message": "exceeded max depth"}}),
                "{route} {what}"
            );
            // and the server still serves
            create_task(addr).await;
        }
    }

    // with an idempotency key: refused, and the key is free afterwards
    let r = http
        .post(format!("{base}/v1/tasks"))
        .header("idempotency-key", "deep-1")
        .body(arrays.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/v1/tasks"))
        .header("idempotency-key", "deep-1")
        .json(&json!({"type": "normal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // 127 levels (the whole body; 126 in the payload) is accepted and
    // stored as sent
    let deepest = format!(r#"{{"type":"x","payload":{}}}"#, deep_arrays(126));
    let r = http
        .post(format!("{base}/v1/tasks"))
        .body(deepest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let stored = client
        .load_task(created["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(stored.payload.unwrap(), deep_arrays(126).into_bytes());

    // an invented method is answered and counted as OTHER, not by its name
    let invented = reqwest::Method::from_bytes(b"FROBNICATE").unwrap();
    let r = http
        .request(invented, format!("{base}/v1/tasks"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"method="OTHER""#),
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("asyncjobs_http_requests_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!metrics.contains("FROBNICATE"));
    stop.cancel();
}

/// A connection that sends nothing.
async fn silent(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// A connection sending `text` one byte every 100 ms until the server
/// closes it; the task ends then.
fn trickle(addr: SocketAddr, text: &'static [u8]) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            return;
        };
        for b in text.iter().cycle() {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Whether the server closed `s` (end of stream or reset) by `until`.
async fn closed_by(s: &mut TcpStream, until: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // an answer (a 408, say) before the close
            Ok(Ok(_)) => continue,
        }
    }
}

/// 600 slow or silent connections under the default limits: a normal
/// request is answered promptly, and the server closes each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_do_not_starve_a_normal_request() {
    let nats = NatsServer::start();
    let client = client_for(&nats, "SLOW").await;
    let stop = CancellationToken::new();
    let addr = serve(client, ConnectionLimits::default(), stop.clone()).await;

    let mut quiet = Vec::new();
    for _ in 0..200 {
        quiet.push(silent(addr).await);
    }
    let mut slow = Vec::new();
    for _ in 0..200 {
        // headers that never end
        slow.push(trickle(
            addr,
            b"POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ));
    }
    for _ in 0..200 {
        // an HTTP/2 preface that never ends
        slow.push(trickle(addr, b"PRI * HTTP/2.0\r\n"));
    }

    let started = Instant::now();
    create_task(addr).await;
    println!(
        "600 slow connections open: a normal request was answered in {:?}",
        started.elapsed()
    );

    // the server gives up on every one of them (the default header
    // timeout is 5 s)
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    for s in &mut quiet {
        assert!(closed_by(s, until).await, "a silent connection is closed");
    }
    wait_for(
        Duration::from_secs(30),
        "every trickling connection closed",
        || {
            let done = slow.iter().all(|h| h.is_finished());
            async move { done.then_some(()) }
        },
    )
    .await;
    create_task(addr).await;
    stop.cancel();
}

/// At the connection cap further connections wait: a request is answered
/// once a slot frees, when a held connection closes or its client runs out
/// of time to send a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_a_request_waits_for_a_free_slot() {
    let nats = NatsServer::start();
    let client = client_for(&nats, "CAP").await;

    // a long header timeout: 8 silent connections hold every slot
    let stop = CancellationToken::new();
    let patient = ConnectionLimits {
        header_read_timeout: Duration::from_secs(120),
        max_connections: 8,
    };
    let addr = serve(client.clone(), patient, stop.clone()).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(silent(addr).await);
    }
    let mut waiting = tokio::spawn(async move { create_task(addr).await.status() });
    // not answered while every slot is held ...
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut waiting)
            .await
            .is_err(),
        "a ninth connection waits"
    );
    // ... and answered once one connection closes
    drop(held.pop());
    let status = tokio::time::timeout(PROMPT, waiting)
        .await
        .expect("answered once a slot frees")
        .unwrap();
    assert_eq!(status, 201);
    stop.cancel();

    // a short header timeout: 40 silent connections against 8 slots only
    // delay a normal request while their clients run out of time
    let stop = CancellationToken::new();
    let hasty = ConnectionLimits {
        header_read_timeout: Duration::from_millis(500),
        max_connections: 8,
    };
    let addr = serve(client, hasty, stop.clone()).await;
    let mut quiet = Vec::new();
    for _ in 0..40 {
        quiet.push(silent(addr).await);
    }
    let started = Instant::now();
    create_task(addr).await;
    println!(
        "40 silent connections, 8 slots: a normal request was answered in {:?}",
        started.elapsed()
    );
    stop.cancel();
}

/// A connection that sends the whole HTTP/2 preface and then nothing (not
/// even its SETTINGS frame) is closed like one that sends nothing at all,
/// or enough of them hold every slot under the cap (docs/interfaces.md
/// §2.1). Found by the fault suite's hostile-client scenario: such
/// connections stayed open for the whole run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_silent_after_the_http2_preface_is_closed() {
    let nats = NatsServer::start();
    let client = client_for(&nats, "H2SILENT").await;
    let stop = CancellationToken::new();
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        max_connections: 8,
    };
    let addr = serve(client, limits, stop.clone()).await;
    let mut s = silent(addr).await;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    assert!(
        closed_by(&mut s, until).await,
        "a connection silent after the HTTP/2 preface is still open after 20 s (header timeout 1 s)"
    );
    stop.cancel();
}
