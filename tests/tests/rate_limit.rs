//! A queue's rate limit (docs/processing.md §2.22) against a real
//! nats-server: three workers together start no more than the limit allows
//! over any window, no try is counted for a wait, the limit is stored with
//! the queue and can be changed and removed, and bad limits are refused
//! at once.

use asyncjobs::{Error, Queue, QueueUpdate, RateLimit, Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{client, spawn_worker, wait_for_state, NatsServer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn three_workers_together_keep_to_the_queues_rate() {
    let server = NatsServer::start();
    let limit: RateLimit = "5/s".parse().unwrap();
    let queue = Queue::new("RATE").rate_limit(limit);
    let producer = client(&server, queue.clone()).await;
    let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let c = client(&server, queue.clone()).await;
        let seen = starts.clone();
        let router = Router::new()
            .handle("call", move |_ctx: TaskContext, _task: Task| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(Instant::now());
                    asyncjobs::handler::to_output(&"ok")
                }
            })
            .unwrap();
        workers.push(spawn_worker(c.worker(router).concurrency(10)));
    }
    let mut ids = Vec::new();
    for i in 0..16 {
        let mut t = Task::new("call", &i).unwrap();
        producer.enqueue(&mut t).await.unwrap();
        ids.push(t.id);
    }
    for id in &ids {
        let done = wait_for_state(&producer, id, TaskState::Complete, T).await;
        // waiting for the limit is not a try
        assert_eq!(done.tries, 1, "{id}");
    }
    for w in workers {
        w.stop().await;
    }
    let mut starts = starts.lock().unwrap().clone();
    starts.sort();
    assert_eq!(starts.len(), 16);
    // one start every 200 ms at most: any six starts span at least five
    // intervals (less the jitter between a start granted and begun)
    for w in starts.windows(6) {
        let span = w[5] - w[0];
        assert!(
            span >= Duration::from_millis(800),
            "6 starts within {span:?}: {starts:?}"
        );
    }
}

#[tokio::test]
async fn the_limit_is_stored_with_the_queue_and_can_be_changed_and_removed() {
    let server = NatsServer::start();
    let limit: RateLimit = "100/1m,burst=10".parse().unwrap();
    let c = client(&server, Queue::new("RATE").rate_limit(limit)).await;
    let info = c.queue_info("RATE").await.unwrap();
    assert_eq!(info.queue.rate_limit, Some(limit));
    assert_eq!(info.queue.priority_aging, None);

    let update = QueueUpdate {
        rate_limit: Some(Some("3/s".parse().unwrap())),
        priority_aging: Some(Some(Duration::from_secs(30))),
        ..Default::default()
    };
    let info = c.configure_queue("RATE", update).await.unwrap();
    assert_eq!(info.queue.rate_limit.unwrap().to_string(), "3/s");
    assert_eq!(info.queue.priority_aging, Some(Duration::from_secs(30)));

    let update = QueueUpdate {
        rate_limit: Some(None),
        priority_aging: Some(None),
        ..Default::default()
    };
    let info = c.configure_queue("RATE", update).await.unwrap();
    assert_eq!(info.queue.rate_limit, None);
    assert_eq!(info.queue.priority_aging, None);
}

#[tokio::test]
async fn bad_limits_are_refused_at_once_and_change_nothing() {
    let server = NatsServer::start();
    let c = client(&server, Queue::new("RATE")).await;
    for text in ["0/s", "-3/s", "10/0s", "5/s,burst=0", "ten/s"] {
        let err = text.parse::<RateLimit>().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{text}: {err}");
        assert!(err.to_string().contains("invalid rate limit"), "{err}");
    }
    let bad = RateLimit {
        starts: 0,
        period: Duration::from_secs(1),
        burst: 1,
    };
    let update = QueueUpdate {
        rate_limit: Some(Some(bad)),
        ..Default::default()
    };
    let err = c.configure_queue("RATE", update).await.unwrap_err();
    assert!(err.to_string().contains("starts per period"), "{err}");
    let update = QueueUpdate {
        priority_aging: Some(Some(Duration::from_millis(10))),
        ..Default::default()
    };
    assert!(c.configure_queue("RATE", update).await.is_err());
    let info = c.queue_info("RATE").await.unwrap();
    assert_eq!(
        (info.queue.rate_limit, info.queue.priority_aging),
        (None, None)
    );
}
