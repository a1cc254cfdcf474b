//! The same JetStream operations as the framework, done directly with
//! async-nats: the baseline the framework's rates are compared with.
//!
//! Enqueue: task record publish (expected last subject sequence 0), state
//! event, work item publish with `Nats-Msg-Id`. Processing: pull, task load,
//! `active` save + event, `complete` save + event, double ack.

use crate::harness::{cleanup, connect, tasks, wait_drained, Done};
use crate::opts::Opts;
use crate::report::percentiles;
use async_nats::jetstream::{self, message::PublishMessage, AckKind};
use async_nats::HeaderMap;
use asyncjobs::events::TaskStateChangeEvent;
use asyncjobs::{Task, TaskResult, TaskState};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) async fn event(nc: &async_nats::Client, t: &Task) {
    let e = TaskStateChangeEvent::for_task(t);
    nc.publish(e.subject(), serde_json::to_vec(&e).unwrap().into())
        .await
        .unwrap();
}

/// Task record (expected last subject sequence 0, acked), state event,
/// work item with `Nats-Msg-Id` (acked): one enqueue.
pub(crate) async fn enqueue_one(
    js: &jetstream::Context,
    nc: &async_nats::Client,
    q: &str,
    mut t: Task,
) {
    t.queue = q.to_string();
    let mut h = HeaderMap::new();
    h.insert("Nats-Expected-Last-Subject-Sequence", "0");
    js.publish_with_headers(
        format!("CHORIA_AJ.T.{}", t.id),
        h,
        t.to_json().unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    event(nc, &t).await;
    let item = format!(r#"{{"kind":0,"job":"{}"}}"#, t.id);
    js.send_publish(
        format!("CHORIA_AJ.Q.{q}.{}", t.id),
        PublishMessage::build()
            .payload(item.into())
            .message_id(&t.id),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

pub async fn enqueue_seq(url: &str, opts: &Opts, rep: usize) -> f64 {
    let q = format!("RAW_ES_{rep}");
    let client = connect(url, &q, opts).await;
    let nc = client.nats().clone();
    let js = jetstream::new(nc.clone());
    let ts = tasks(opts.tasks);
    let started = Instant::now();
    for t in ts {
        enqueue_one(&js, &nc, &q, t).await;
    }
    let rate = opts.tasks as f64 / started.elapsed().as_secs_f64();
    assert_eq!(
        client.queue_info(&q).await.unwrap().stream.messages as usize,
        opts.tasks
    );
    cleanup(&client, &q).await;
    rate
}

async fn enqueue_all_pipelined(
    js: &jetstream::Context,
    nc: &async_nats::Client,
    q: &str,
    ts: Vec<Task>,
) {
    futures::stream::iter(ts)
        .for_each_concurrent(256, |t| enqueue_one(js, nc, q, t))
        .await;
}

pub async fn enqueue_pipelined(url: &str, opts: &Opts, rep: usize) -> f64 {
    let q = format!("RAW_EP_{rep}");
    let client = connect(url, &q, opts).await;
    let nc = client.nats().clone();
    let js = jetstream::new(nc.clone());
    let ts = tasks(opts.tasks);
    let started = Instant::now();
    enqueue_all_pipelined(&js, &nc, &q, ts).await;
    let rate = opts.tasks as f64 / started.elapsed().as_secs_f64();
    assert_eq!(
        client.queue_info(&q).await.unwrap().stream.messages as usize,
        opts.tasks
    );
    cleanup(&client, &q).await;
    rate
}

/// Processes items of `q` with `concurrency` in flight until `stop`; calls
/// `on_start` with each task id when its "handler" would start, then `hold`.
async fn worker<F, H, HF>(
    nc: async_nats::Client,
    q: String,
    concurrency: usize,
    done: Arc<Done>,
    on_start: F,
    hold: H,
) where
    F: Fn(&str) + Send + Sync + 'static,
    H: Fn() -> HF + Send + Sync + 'static,
    HF: std::future::Future<Output = ()> + Send,
{
    let js = jetstream::new(nc.clone());
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream_no_info(format!("CHORIA_AJ_Q_{q}"))
        .await
        .unwrap()
        .get_consumer("WORKERS")
        .await
        .unwrap();
    let tasks_stream = js.get_stream_no_info("CHORIA_AJ_TASKS").await.unwrap();
    let messages = consumer
        .stream()
        .max_messages_per_batch(concurrency.min(100))
        .messages()
        .await
        .unwrap();
    let (on_start, hold) = (Arc::new(on_start), Arc::new(hold));
    messages
        .for_each_concurrent(concurrency, |m| {
            let (js, nc, tasks_stream, done) =
                (js.clone(), nc.clone(), tasks_stream.clone(), done.clone());
            let (on_start, hold) = (on_start.clone(), hold.clone());
            async move {
                let Ok(m) = m else { return };
                let item: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                let id = item["job"].as_str().unwrap().to_string();
                let stored = tasks_stream
                    .get_last_raw_message_by_subject(&format!("CHORIA_AJ.T.{id}"))
                    .await
                    .unwrap();
                let mut t = Task::from_json(&stored.payload).unwrap();
                t.state = TaskState::Active;
                t.tries += 1;
                t.tried = Some(time::OffsetDateTime::now_utc());
                let mut h = HeaderMap::new();
                h.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    stored.sequence.to_string().as_str(),
                );
                let ack = js
                    .publish_with_headers(
                        format!("CHORIA_AJ.T.{id}"),
                        h,
                        t.to_json().unwrap().into(),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                event(&nc, &t).await;
                on_start(&id);
                hold().await;
                t.state = TaskState::Complete;
                t.result = Some(
                    serde_json::from_str::<TaskResult>(&format!(
                        r#"{{"payload":null,"completed":"{}"}}"#,
                        asyncjobs::wire::format_time(&time::OffsetDateTime::now_utc())
                    ))
                    .unwrap(),
                );
                let mut h = HeaderMap::new();
                h.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    ack.sequence.to_string().as_str(),
                );
                js.publish_with_headers(
                    format!("CHORIA_AJ.T.{id}"),
                    h,
                    t.to_json().unwrap().into(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
                event(&nc, &t).await;
                m.double_ack_with(AckKind::Ack).await.unwrap();
                done.add();
            }
        })
        .await;
}

fn spawn_worker(
    nc: async_nats::Client,
    q: &str,
    concurrency: usize,
    done: Arc<Done>,
    on_start: impl Fn(&str) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(worker(
        nc,
        q.to_string(),
        concurrency,
        done,
        on_start,
        || async {},
    ))
}

pub async fn process(url: &str, opts: &Opts, rep: usize, concurrency: usize) -> f64 {
    let q = format!("RAW_P{concurrency}_{rep}");
    let client = connect(url, &q, opts).await;
    let mut ts = tasks(opts.tasks);
    for r in client.enqueue_many(&mut ts).await {
        r.unwrap();
    }
    let done = Done::new(opts.tasks);
    let started = Instant::now();
    let cpu = crate::cpu::Span::start();
    let w = spawn_worker(client.nats().clone(), &q, concurrency, done.clone(), |_| {});
    done.reached().await;
    wait_drained(&client, &q, opts.tasks).await;
    let rate = opts.tasks as f64 / started.elapsed().as_secs_f64();
    cpu.finish(opts.tasks);
    w.abort();
    cleanup(&client, &q).await;
    rate
}

pub async fn e2e(url: &str, opts: &Opts, rep: usize) -> f64 {
    let q = format!("RAW_E2E_{rep}");
    let client = connect(url, &q, opts).await;
    let nc = client.nats().clone();
    let js = jetstream::new(nc.clone());
    let done = Done::new(opts.tasks);
    let w = spawn_worker(nc.clone(), &q, 100, done.clone(), |_| {});
    let ts = tasks(opts.tasks);
    let started = Instant::now();
    let cpu = crate::cpu::Span::start();
    enqueue_all_pipelined(&js, &nc, &q, ts).await;
    done.reached().await;
    wait_drained(&client, &q, opts.tasks).await;
    let rate = opts.tasks as f64 / started.elapsed().as_secs_f64();
    cpu.finish(opts.tasks);
    w.abort();
    cleanup(&client, &q).await;
    rate
}

pub async fn latency(url: &str, opts: &Opts, rep: usize) -> (f64, f64) {
    let q = format!("RAW_LAT_{rep}");
    let client = connect(url, &q, opts).await;
    let nc = client.nats().clone();
    let js = jetstream::new(nc.clone());
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let (s, l) = (sent.clone(), lat.clone());
    let done = Done::new(opts.latency_tasks);
    let w = spawn_worker(nc.clone(), &q, 100, done.clone(), move |id| {
        if let Some(t0) = s.lock().unwrap().get(id) {
            l.lock().unwrap().push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.latency_rate as f64));
    for t in tasks(opts.latency_tasks) {
        tick.tick().await;
        sent.lock().unwrap().insert(t.id.clone(), Instant::now());
        enqueue_one(&js, &nc, &q, t).await;
    }
    done.reached().await;
    w.abort();
    cleanup(&client, &q).await;
    let v = lat.lock().unwrap().clone();
    percentiles(v)
}

/// The raw worker for the memory measurement: holds `n` tasks until released.
pub async fn hold_inflight(
    nc: async_nats::Client,
    q: &str,
    n: usize,
    release: Arc<tokio::sync::Notify>,
) {
    let done = Done::new(n);
    worker(
        nc,
        q.to_string(),
        n,
        done,
        |_| {},
        move || {
            let release = release.clone();
            async move { release.notified().await }
        },
    )
    .await;
}
