//! The spans asyncjobs makes, named and attributed after the OpenTelemetry
//! messaging semantic conventions (`publish <queue>` for an enqueue,
//! `process <queue>` for each try, `schedule <name>` for a scheduler
//! firing). They are ordinary `tracing` spans; with the feature `otel`
//! ([`crate::otel`]) they are parented through the task's W3C
//! `traceparent` and exported.

use crate::task::Task;
use tracing::field::Empty;
use tracing::Span;

/// The span of an enqueue: kind producer; a child of the task's
/// `traceparent` when one was given, else of the current span.
pub(crate) fn publish(queue: &str, task: &Task) -> Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format_args!("publish {queue}"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %queue,
        messaging.message.id = %task.id,
        asyncjobs.task.type = %task.task_type,
    );
    if let Some(tp) = &task.traceparent {
        set_parent(&span, tp, false);
    }
    span
}

/// The span of one try: kind consumer, a child of the enqueue through the
/// item's `traceparent`. The outcome is recorded with [`finish_process`].
pub(crate) fn process(task: &Task, traceparent: Option<&str>) -> Span {
    let trace_id = traceparent
        .and_then(|tp| tp.split('-').nth(1))
        .unwrap_or("");
    let span = tracing::info_span!(
        "task",
        otel.name = %format_args!("process {}", task.queue),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = %task.queue,
        messaging.message.id = %task.id,
        id = %task.id,
        r#type = %task.task_type,
        queue = %task.queue,
        try_ = task.tries,
        asyncjobs.task.outcome = Empty,
        error.type = Empty,
        error.message = Empty,
        trace_id = %trace_id,
    );
    if let Some(tp) = traceparent {
        set_parent(&span, tp, true);
    }
    span
}

/// Records how a try ended: `complete`, or the error.
pub(crate) fn finish_process(span: &Span, outcome: &'static str, error: Option<&str>) {
    span.record("asyncjobs.task.outcome", outcome);
    if let Some(e) = error {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", outcome);
        span.record("error.message", e);
    }
}

/// The span of a scheduler firing: the enqueue it makes is its child.
pub(crate) fn schedule(name: &str, queue: &str) -> Span {
    tracing::info_span!(
        "schedule",
        otel.name = %format_args!("schedule {name}"),
        otel.kind = "internal",
        asyncjobs.schedule.name = %name,
        messaging.destination.name = %queue,
    )
}

fn set_parent(span: &Span, traceparent: &str, link: bool) {
    #[cfg(feature = "otel")]
    crate::otel::set_parent(span, traceparent, link);
    #[cfg(not(feature = "otel"))]
    let _ = (span, traceparent, link);
}

/// The `traceparent` to hand on from inside `span`: its own context when an
/// OpenTelemetry layer records it, else `fallback`.
pub(crate) fn traceparent(span: &Span, fallback: Option<String>) -> Option<String> {
    #[cfg(feature = "otel")]
    if let Some(tp) = crate::otel::traceparent_of(span) {
        return Some(tp);
    }
    #[cfg(not(feature = "otel"))]
    let _ = span;
    fallback
}
