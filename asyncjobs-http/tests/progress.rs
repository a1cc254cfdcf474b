//! The dashboard's bulk actions run in the background with a progress
//! record in the KV bucket `CHORIA_AJ_HTTP_BULK` (docs/storage.md §5.6)
//! that every replica reads: against a real nats-server, two routers
//! (replicas) over it and a real HTTP client.

mod support;

use asyncjobs::{Client, Queue, Task, TaskState};
use asyncjobs_http::{parse_credentials, router, ApiOptions};
use asyncjobs_tests::NatsServer;
use serde_json::{json, Value};
use std::time::Duration;

/// How long any wait here may take.
const T: Duration = Duration::from_secs(60);
const BUCKET: &str = "CHORIA_AJ_HTTP_BULK";

async fn serve(url: &str) -> String {
    serve_with(url, ApiOptions::default()).await
}

async fn serve_with(url: &str, options: ApiOptions) -> String {
    let client = Client::builder()
        .url(url)
        .queue(Queue::new("BULK"))
        .build()
        .await
        .unwrap();
    let app = router(client, options);
    support::listen(app).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(T)
        .build()
        .unwrap()
}

async fn page(http: &reqwest::Client, url: String) -> (u16, String) {
    let r = http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The form token of the dashboard at `base`.
async fn csrf(http: &reqwest::Client, base: &str) -> String {
    let (_, body) = page(http, format!("{base}/ui/tasks")).await;
    body.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a csrf field")
        .to_string()
}

/// Posts a confirmed bulk form; the job id it is redirected (303) to.
async fn start(http: &reqwest::Client, url: String, form: &[(&str, &str)]) -> String {
    let r = http.post(url).form(form).send().await.unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    to.strip_prefix("/ui/bulk/")
        .unwrap_or_else(|| panic!("redirected to {to}"))
        .to_string()
}

async fn enqueue(url: &str, n: usize) -> (Client, Vec<String>) {
    let client = Client::builder()
        .url(url)
        .queue(Queue::new("BULK"))
        .build()
        .await
        .unwrap();
    let mut tasks: Vec<Task> = (0..n)
        .map(|i| Task::new("bulk:many", &i).unwrap())
        .collect();
    assert!(client
        .enqueue_many(&mut tasks)
        .await
        .iter()
        .all(Result::is_ok));
    (client, tasks.into_iter().map(|t| t.id).collect())
}

/// The job's records, read from the bucket until it is no longer
/// running: each state and (handled, total) seen, in order.
async fn watch(url: &str, job: &str) -> Vec<Value> {
    let nc = async_nats::connect(url).await.unwrap();
    let kv = async_nats::jetstream::new(nc)
        .get_key_value(BUCKET)
        .await
        .unwrap();
    let mut seen: Vec<Value> = vec![];
    tokio::time::timeout(T, async {
        loop {
            let v = kv.get(job).await.unwrap().expect("the job's record");
            let r: Value = serde_json::from_slice(&v).unwrap();
            let running = r["state"] == "running";
            if seen.last() != Some(&r) {
                seen.push(r);
            }
            if !running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still running: {seen:?}"));
    seen
}

/// A bulk delete of 2,000 tasks by filter started on one replica: the
/// browser is redirected to its progress page at once, the record in the
/// bucket goes from running (tasks handled growing, never past the total)
/// to finished with every task handled and deleted, and the other replica
/// shows the same page: progress while running, then the summary.
#[tokio::test]
async fn a_bulk_action_reports_progress_every_replica_reads() {
    let nats = NatsServer::start();
    let (client, ids) = enqueue(&nats.url(), 2000).await;
    let a = serve(&nats.url()).await;
    let b = serve(&nats.url()).await;
    let http = http();
    let csrf = csrf(&http, &a).await;
    let job = start(
        &http,
        format!("{a}/ui/tasks/delete"),
        &[
            ("csrf", csrf.as_str()),
            ("confirmed", "1"),
            ("queue", "BULK"),
            ("type", "bulk:many"),
        ],
    )
    .await;
    // the other replica shows the job while it runs (reloading itself)
    let (status, body) = page(&http, format!("{b}/ui/bulk/{job}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Delete matching tasks"), "{body}");
    assert!(body.contains("<progress"), "{body}");

    let seen = watch(&nats.url(), &job).await;
    // progress between the start and the end (written every 100 tasks)
    assert!(
        seen.iter()
            .any(|r| r["total"] == 2000 && (1..2000).contains(&r["handled"].as_u64().unwrap())),
        "{seen:?}"
    );
    assert_eq!(seen[0]["state"], "running", "{seen:?}");
    let last = seen.last().unwrap();
    assert_eq!(last["state"], "finished", "{last}");
    assert_eq!(last["total"], 2000);
    assert_eq!(last["handled"], 2000);
    assert_eq!(last["done"], 2000);
    assert_eq!(
        (last["skipped"].clone(), last["failed"].clone()),
        (json!(0), json!(0))
    );
    let handled: Vec<u64> = seen
        .iter()
        .map(|r| r["handled"].as_u64().unwrap())
        .collect();
    assert!(handled.windows(2).all(|w| w[0] <= w[1]), "{handled:?}");
    for r in &seen {
        if let Some(total) = r["total"].as_u64() {
            assert_eq!(total, 2000, "{r}");
        }
    }
    for id in ids.iter().step_by(250) {
        assert!(matches!(
            client.load_task(id).await,
            Err(asyncjobs::Error::TaskNotFound(_))
        ));
    }
    for base in [&a, &b] {
        let (status, body) = page(&http, format!("{base}/ui/bulk/{job}")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("2000 tasks deleted"), "{body}");
        assert!(body.contains("2000 of 2000 tasks done"), "{body}");
        assert!(!body.contains("http-equiv=\"refresh\""), "{body}");
    }
    let (status, _) = page(&http, format!("{b}/ui/bulk/0123456789abcdef")).await;
    assert_eq!(status, 404);
}

/// A selection's action runs in the background too, and a record still
/// "running" that nobody has written for long (its replica stopped) shows
/// as interrupted, not running forever.
#[tokio::test]
async fn a_selection_reports_progress_and_a_stale_job_is_interrupted() {
    let nats = NatsServer::start();
    let (client, ids) = enqueue(&nats.url(), 3).await;
    let a = serve(&nats.url()).await;
    let http = http();
    let csrf = csrf(&http, &a).await;
    let job = start(
        &http,
        format!("{a}/ui/tasks/selected/cancel"),
        &[
            ("csrf", csrf.as_str()),
            ("confirmed", "1"),
            ("id", ids[0].as_str()),
            ("id", ids[1].as_str()),
        ],
    )
    .await;
    let last = watch(&nats.url(), &job).await.pop().unwrap();
    assert_eq!(
        (last["state"].clone(), last["done"].clone()),
        (json!("finished"), json!(2))
    );
    let (_, body) = page(&http, format!("{a}/ui/bulk/{job}")).await;
    assert!(body.contains("2 tasks cancelled"), "{body}");
    for id in &ids[..2] {
        assert_eq!(
            client.load_task(id).await.unwrap().state,
            TaskState::Terminated
        );
    }
    assert_eq!(
        client.load_task(&ids[2]).await.unwrap().state,
        TaskState::New
    );

    // a record its replica stopped writing a minute ago
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let kv = async_nats::jetstream::new(nc)
        .get_key_value(BUCKET)
        .await
        .unwrap();
    let mut stale: Value = serde_json::from_slice(&kv.get(&job).await.unwrap().unwrap()).unwrap();
    let minute_ago = stale["updated"].as_i64().unwrap() - 60_000;
    stale["state"] = json!("running");
    stale["updated"] = json!(minute_ago);
    stale["handled"] = json!(1);
    kv.put(
        "5ca1e0123456789a",
        serde_json::to_vec(&stale).unwrap().into(),
    )
    .await
    .unwrap();
    let (status, body) = page(&http, format!("{a}/ui/bulk/5ca1e0123456789a")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Interrupted:"), "{body}");
    assert!(body.contains("(1 of 2 tasks were handled)"), "{body}");
    assert!(!body.contains("http-equiv=\"refresh\""), "{body}");
}

/// Starting a bulk action is an operator's (a viewer's confirmed POST is
/// refused and nothing is deleted), in the audit trail; its progress page
/// is a page a viewer reads.
#[tokio::test]
async fn a_viewer_reads_the_progress_an_operator_started() {
    const ALICE: &str = "alice-operator-token-0001";
    const BOB: &str = "bob-viewer-token-00000001";
    let nats = NatsServer::start();
    let (client, ids) = enqueue(&nats.url(), 2).await;
    let options = ApiOptions {
        credentials: parse_credentials(&format!("operator alice {ALICE}\nviewer bob {BOB}\n"))
            .unwrap(),
        ..ApiOptions::default()
    };
    let base = serve_with(&nats.url(), options).await;
    let http = http();
    let (_, list) = {
        let r = http
            .get(format!("{base}/ui/tasks"))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    let csrf = list
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a csrf field")
        .to_string();
    let form = [
        ("csrf", csrf.as_str()),
        ("confirmed", "1"),
        ("queue", "BULK"),
    ];
    let r = http
        .post(format!("{base}/ui/tasks/delete"))
        .bearer_auth(BOB)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        client.load_task(&ids[0]).await.unwrap().state,
        TaskState::New
    );
    let r = http
        .post(format!("{base}/ui/tasks/delete"))
        .bearer_auth(ALICE)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let job = to.strip_prefix("/ui/bulk/").unwrap().to_string();
    assert_eq!(watch(&nats.url(), &job).await.pop().unwrap()["done"], 2);
    let r = http
        .get(format!("{base}{to}"))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("2 tasks deleted"));
    // ids that are not a job's (bucket wildcards, separators, too long,
    // upper case, percent-encoded control bytes) are 404, never a bucket
    // error
    for hostile in [
        "a*b",
        ">",
        "0123456789abcdef.x",
        "..x",
        "%00",
        "0123456789ABCDEF",
        "0123456789abcdef0",
        "x%2fetc",
        "a%20b",
        "0000000000000000",
    ] {
        let r = http
            .get(format!("{base}/ui/bulk/{hostile}"))
            .bearer_auth(BOB)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "/ui/bulk/{hostile}");
    }
    // the trail has both POSTs with who made them
    let trail: Value = http
        .get(format!("{base}/v1/audit?limit=10"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let posts: Vec<(String, u64)> = trail["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{trail}"))
        .iter()
        .filter(|e| e["path"] == "/ui/tasks/delete")
        .map(|e| {
            (
                e["who"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(posts.len(), 2, "{trail}");
    assert!(posts.contains(&("alice".into(), 303)), "{posts:?}");
    assert!(posts.contains(&("bob".into(), 403)), "{posts:?}");
}
