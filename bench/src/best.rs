//! The fastest correct client found for the framework's per-task JetStream
//! operations, written with async-nats alone: the comparator the
//! framework's rates are judged against (issue 15).
//!
//! Same guarantees as the framework: every task write carries
//! `Nats-Expected-Last-Subject-Sequence`, the task record is acknowledged
//! before its work item is written, items are double-acknowledged, and one
//! state event is published per state change. What makes it fast (see
//! [`CONFIGURATION`]): one connection driven by a current-thread runtime on
//! its own thread (no cross-thread wake-ups per round trip), items pulled
//! in batches as large as the concurrency and processed without spawning,
//! and task loads by direct get (plain bytes, no JSON/base64 envelope).
//! [`Items`] is the processing loop, also run by the worker processes of
//! [`crate::workers`].

use crate::harness::{cleanup, connect, on_current_thread, tasks, wait_drained};
use crate::opts::Opts;
use crate::raw::{enqueue_one, event};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, AckKind};
use async_nats::HeaderMap;
use asyncjobs::{Task, TaskState};
use futures::StreamExt;
use std::cell::Cell;
use std::time::Instant;

/// How the best raw client is configured, printed with the results.
pub const CONFIGURATION: &str = "current-thread runtime on its own thread, one connection; \
     pull batches of the concurrency (refilled at half), no spawn per item; \
     loads by direct get; writes with expected sequence, each ack awaited; \
     core-NATS events; double ack; enqueue: record acked before item, 256 in flight when batched";

fn expect_seq(seq: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "Nats-Expected-Last-Subject-Sequence",
        seq.to_string().as_str(),
    );
    h
}

/// Saves `t` on `subject` if its last sequence is still `seq`; returns
/// the new sequence.
async fn save(js: &jetstream::Context, subject: &str, seq: u64, t: &Task) -> u64 {
    try_save(js, subject, seq, t)
        .await
        .expect("no one else writes the record")
}

/// [`save`], `None` when the last sequence is not `seq` (on a cluster, a
/// direct get answered by a lagging replica gave an older record).
async fn try_save(js: &jetstream::Context, subject: &str, seq: u64, t: &Task) -> Option<u64> {
    let acked = js
        .publish_with_headers(
            subject.to_string(),
            expect_seq(seq),
            t.to_json().unwrap().into(),
        )
        .await
        .unwrap()
        .await;
    match acked {
        Ok(ack) => Some(ack.sequence),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => None,
        Err(e) => panic!("saving {subject}: {e}"),
    }
}

/// Enqueues `ts` into `q` with `in_flight` at once; returns tasks/s.
async fn enqueue_all(url: String, q: String, ts: Vec<Task>, in_flight: usize) -> f64 {
    let nc = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(nc.clone());
    let n = ts.len();
    let started = Instant::now();
    futures::stream::iter(ts)
        .for_each_concurrent(in_flight, |t| enqueue_one(&js, &nc, &q, t))
        .await;
    n as f64 / started.elapsed().as_secs_f64()
}

async fn enqueue(url: &str, opts: &Opts, name: &str, in_flight: usize) -> f64 {
    let client = connect(url, name, opts).await;
    let ts = tasks(opts.tasks);
    let (url2, q) = (url.to_string(), name.to_string());
    let rate = on_current_thread(move || enqueue_all(url2, q, ts, in_flight)).await;
    assert_eq!(
        client.queue_info(name).await.unwrap().stream.messages as usize,
        opts.tasks
    );
    cleanup(&client, name).await;
    rate
}

pub async fn enqueue_seq(url: &str, opts: &Opts, rep: usize) -> f64 {
    enqueue(url, opts, &format!("BEST_ES_{rep}"), 1).await
}

pub async fn enqueue_pipelined(url: &str, opts: &Opts, rep: usize) -> f64 {
    enqueue(url, opts, &format!("BEST_EP_{rep}"), 256).await
}

/// A task's latest record and its stream sequence, by direct get when the
/// stream allows it, else by `STREAM.MSG.GET`.
async fn load(
    nc: &async_nats::Client,
    js: &jetstream::Context,
    direct: bool,
    id: &str,
) -> (u64, bytes::Bytes) {
    let subject = format!("CHORIA_AJ.T.{id}");
    if direct {
        let m = nc
            .request(
                format!("$JS.API.DIRECT.GET.CHORIA_AJ_TASKS.{subject}"),
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        let seq = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Sequence"))
            .and_then(|v| v.as_str().parse().ok());
        match seq {
            Some(seq) => (seq, m.payload),
            // a replica that lags the leader (a cluster): the leader's
            None => Box::pin(load(nc, js, false, id)).await,
        }
    } else {
        let stream = js.get_stream_no_info("CHORIA_AJ_TASKS").await.unwrap();
        let m = stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .unwrap();
        (m.sequence, m.payload)
    }
}

/// A connection's view of a queue's items: the `WORKERS` consumer, and
/// how task records are loaded.
pub(crate) struct Items {
    nc: async_nats::Client,
    js: jetstream::Context,
    direct: bool,
    consumer: jetstream::consumer::PullConsumer,
}

impl Items {
    /// Looks up `q`'s consumer and the task store (no item pulled yet).
    pub(crate) async fn open(nc: async_nats::Client, q: &str) -> Items {
        let js = jetstream::new(nc.clone());
        let direct = js
            .get_stream("CHORIA_AJ_TASKS")
            .await
            .unwrap()
            .cached_info()
            .config
            .allow_direct;
        let consumer: jetstream::consumer::PullConsumer = js
            .get_stream_no_info(format!("CHORIA_AJ_Q_{q}"))
            .await
            .unwrap()
            .get_consumer("WORKERS")
            .await
            .unwrap();
        Items {
            nc,
            js,
            direct,
            consumer,
        }
    }

    /// Processes up to `n` items with `concurrency` in flight, until
    /// `stop` resolves (the items started then are finished), counting
    /// them in `done`.
    pub(crate) async fn process(
        &self,
        concurrency: usize,
        n: usize,
        stop: impl std::future::Future<Output = ()>,
        done: &Cell<usize>,
    ) {
        let messages = self
            .consumer
            .stream()
            .max_messages_per_batch(concurrency)
            .messages()
            .await
            .unwrap();
        messages
            .take(n)
            .take_until(stop)
            .for_each_concurrent(concurrency, |m| async move {
                self.handle(m.unwrap()).await;
                done.set(done.get() + 1);
            })
            .await;
    }

    /// One item: the task saved active, then complete, each with its
    /// event, then the item double-acked.
    async fn handle(&self, m: jetstream::Message) {
        #[derive(serde::Deserialize)]
        struct Item {
            job: String,
        }
        let (js, nc) = (&self.js, &self.nc);
        let item: Item = serde_json::from_slice(&m.payload).unwrap();
        let subject = format!("CHORIA_AJ.T.{}", item.job);
        // a direct get may be answered by a replica behind the leader: an
        // older record's save is refused, and the leader's is loaded
        let mut direct = self.direct;
        let (seq, mut t) = loop {
            let (seq, stored) = load(nc, js, direct, &item.job).await;
            let mut t = Task::from_json(&stored).unwrap();
            t.state = TaskState::Active;
            t.tries += 1;
            t.tried = Some(time::OffsetDateTime::now_utc());
            match try_save(js, &subject, seq, &t).await {
                Some(seq) => break (seq, t),
                None if direct => direct = false,
                None => panic!("{subject} changed under the only writer"),
            }
        };
        event(nc, &t).await;
        t.state = TaskState::Complete;
        t.result = Some(
            serde_json::from_str(&format!(
                r#"{{"payload":null,"completed":"{}"}}"#,
                asyncjobs::wire::format_time(&time::OffsetDateTime::now_utc())
            ))
            .unwrap(),
        );
        save(js, &subject, seq, &t).await;
        event(nc, &t).await;
        m.double_ack_with(AckKind::Ack).await.unwrap();
    }
}

/// Processes `n` items of `q` with `concurrency` in flight.
async fn process_items(
    nc: async_nats::Client,
    q: String,
    concurrency: usize,
    n: usize,
    done: &Cell<usize>,
) {
    Items::open(nc, &q)
        .await
        .process(concurrency, n, std::future::pending(), done)
        .await;
}

pub async fn process(url: &str, opts: &Opts, rep: usize, concurrency: usize) -> f64 {
    process_from(
        url,
        opts,
        &format!("BEST_P{concurrency}_{rep}"),
        concurrency,
        opts.tasks,
    )
    .await
}

/// Tasks/s processing the first `opts.tasks` of `queued` tasks of a new
/// queue `q` at `concurrency`.
pub async fn process_from(
    url: &str,
    opts: &Opts,
    q: &str,
    concurrency: usize,
    queued: usize,
) -> f64 {
    let client = connect(url, q, opts).await;
    for chunk in (0..queued).collect::<Vec<_>>().chunks(10_000) {
        let mut ts = tasks(chunk.len());
        for r in client.enqueue_many(&mut ts).await {
            r.unwrap();
        }
    }
    let n = opts.tasks.min(queued);
    let (url2, q2) = (url.to_string(), q.to_string());
    let cpu = crate::cpu::Span::start();
    let started = Instant::now();
    on_current_thread(move || async move {
        let nc = async_nats::connect(url2).await.unwrap();
        let done = Cell::new(0);
        process_items(nc, q2, concurrency, n, &done).await;
    })
    .await;
    if queued == n {
        wait_drained(&client, q, n).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    cpu.finish(n);
    cleanup(&client, q).await;
    rate
}

/// Enqueue (256 in flight) and processing (concurrency 100) at once, on
/// one current-thread runtime and connection.
pub async fn e2e(url: &str, opts: &Opts, rep: usize) -> f64 {
    let q = format!("BEST_E2E_{rep}");
    let client = connect(url, &q, opts).await;
    let ts = tasks(opts.tasks);
    let (url2, q2, n) = (url.to_string(), q.clone(), opts.tasks);
    let cpu = crate::cpu::Span::start();
    let started = Instant::now();
    on_current_thread(move || async move {
        let nc = async_nats::connect(url2).await.unwrap();
        let js = jetstream::new(nc.clone());
        let done = Cell::new(0);
        let produce =
            futures::stream::iter(ts).for_each_concurrent(256, |t| enqueue_one(&js, &nc, &q2, t));
        futures::join!(
            produce,
            process_items(nc.clone(), q2.clone(), 100, n, &done)
        );
    })
    .await;
    wait_drained(&client, &q, opts.tasks).await;
    let rate = opts.tasks as f64 / started.elapsed().as_secs_f64();
    cpu.finish(opts.tasks);
    cleanup(&client, &q).await;
    rate
}
