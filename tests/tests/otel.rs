//! OpenTelemetry traces (feature `otel`) with the SDK's in-memory exporter
//! against a real nats-server: one trace from the producer's span through
//! the enqueue, a failed try and the retry that completes, with the
//! messaging conventions' names, kinds, parents and attributes.

use asyncjobs::{HandlerError, Queue, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{fast_retry, spawn_worker, wait_for_state, NatsServer};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use tracing_subscriber::prelude::*;

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_enqueue_through_a_retry_to_complete() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(asyncjobs::otel::layer(&provider)),
    )
    .expect("the only subscriber of this test binary");

    let server = NatsServer::start();
    let client = asyncjobs::Client::builder()
        .url(server.url())
        .queue(Queue::new("OTEL"))
        .build()
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let seen = runs.clone();
    let router = Router::new()
        .handle("flaky", move |_: TaskContext, _: Task| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(HandlerError::retry("first try fails"))
                } else {
                    asyncjobs::handler::to_output(&"done")
                }
            }
        })
        .unwrap();
    let worker = spawn_worker(client.worker(router).retry_policy(fast_retry()));

    let mut task = Task::new("flaky", &1).unwrap();
    let checkout = tracing::info_span!("checkout");
    client
        .enqueue(&mut task)
        .instrument(checkout.clone())
        .await
        .unwrap();
    drop(checkout);
    wait_for_state(
        &client,
        &task.id,
        TaskState::Complete,
        Duration::from_secs(20),
    )
    .await;
    worker.stop().await;
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();

    let named =
        |name: &str| -> Vec<&SpanData> { spans.iter().filter(|s| s.name == name).collect() };
    let root = named("checkout");
    assert_eq!(root.len(), 1, "{spans:#?}");
    let root = root[0];
    let publish = named("publish OTEL");
    assert_eq!(publish.len(), 1, "the enqueue: {spans:#?}");
    let publish = publish[0];
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(publish.parent_span_id, root.span_context.span_id());
    assert_eq!(
        attr(publish, "messaging.destination.name").as_deref(),
        Some("OTEL")
    );
    assert_eq!(
        attr(publish, "messaging.message.id").as_deref(),
        Some(task.id.as_str())
    );
    assert_eq!(
        attr(publish, "asyncjobs.task.type").as_deref(),
        Some("flaky")
    );

    let mut tries = named("process OTEL");
    assert_eq!(tries.len(), 2, "one span per try: {spans:#?}");
    tries.sort_by_key(|s| s.start_time);
    let trace = root.span_context.trace_id();
    for s in &tries {
        assert_eq!(s.span_kind, SpanKind::Consumer);
        assert_eq!(
            s.span_context.trace_id(),
            trace,
            "every try is in the producer's trace"
        );
        assert_eq!(
            s.parent_span_id,
            publish.span_context.span_id(),
            "a try is a child of the enqueue"
        );
        assert_eq!(
            attr(s, "messaging.message.id").as_deref(),
            Some(task.id.as_str())
        );
    }
    assert_eq!(
        attr(tries[0], "asyncjobs.task.outcome").as_deref(),
        Some("failed")
    );
    assert!(
        matches!(tries[0].status, Status::Error { .. }),
        "{:?}",
        tries[0].status
    );
    assert_eq!(
        attr(tries[0], "error.message").as_deref(),
        Some("first try fails")
    );
    assert_eq!(
        attr(tries[1], "asyncjobs.task.outcome").as_deref(),
        Some("complete")
    );
    assert_ne!(
        attr(tries[0], "try_"),
        attr(tries[1], "try_"),
        "the try number differs"
    );
    assert_eq!(publish.span_context.trace_id(), trace);
}
