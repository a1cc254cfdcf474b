//! `--dashboard-tasks`: the dashboard over large stores (issue 33): with
//! that many stored tasks (filled with `enqueue_many`, sizes ascending,
//! in one store), the overview's answer before the first count, the
//! background count of tasks by state, the overview's answer once counted
//! (median of 5), and one page of the task list filtered by state and by
//! a type only the newest tasks have (the page reads at most 20,000
//! records and links the next).

use crate::harness::{cleanup, connect, tasks};
use crate::opts::Opts;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

/// One size's figures.
struct Figures {
    stored: usize,
    cold_ms: f64,
    count_secs: f64,
    /// How long the count itself took, as the overview says.
    count_took: String,
    overview_ms: f64,
    list_state_ms: f64,
    list_rare_ms: f64,
}

/// Runs every size of `--dashboard-tasks`; a line per size and `extra`
/// figures.
pub async fn report(url: &str, opts: &Opts, extra: &mut Map<String, Value>) {
    let q = "BENCH_UI";
    let client = connect(url, q, opts).await;
    let app = asyncjobs_http::router(
        client.clone(),
        asyncjobs_http::ApiOptions {
            stats_interval: Duration::ZERO,
            ..Default::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut sizes = opts.dashboard_tasks.clone();
    sizes.sort_unstable();
    let mut stored = 0;
    let mut rows = vec![];
    for size in sizes {
        while stored < size {
            let n = (size - stored).min(10_000);
            let mut ts = tasks(n);
            if stored + n == size {
                // the newest 100 are of a type nothing older has
                for t in ts.iter_mut().rev().take(100) {
                    t.task_type = "bench:rare".into();
                }
            }
            for r in client.enqueue_many(&mut ts).await {
                r.unwrap();
            }
            stored += n;
        }
        rows.push(measure(&http, &base, stored).await);
    }
    for f in &rows {
        eprintln!(
            "dashboard over {} stored tasks: overview before the first count {:.0} ms; background count shown after {:.2} s (the count took {}); overview {:.0} ms; task list by state {:.0} ms, by a type only the newest 100 have (one page of at most 20,000 records) {:.0} ms",
            f.stored, f.cold_ms, f.count_secs, f.count_took, f.overview_ms, f.list_state_ms, f.list_rare_ms
        );
        let key = |what: &str| format!("dashboard_{}_{what}", f.stored);
        extra.insert(key("cold_ms"), serde_json::json!(f.cold_ms.round()));
        extra.insert(key("count_secs"), serde_json::json!(f.count_secs));
        extra.insert(key("overview_ms"), serde_json::json!(f.overview_ms.round()));
        extra.insert(
            key("list_state_ms"),
            serde_json::json!(f.list_state_ms.round()),
        );
        extra.insert(
            key("list_rare_ms"),
            serde_json::json!(f.list_rare_ms.round()),
        );
    }
    cleanup(&client, q).await;
}

/// Milliseconds to answer `path` with 200.
async fn timed(http: &reqwest::Client, base: &str, path: &str) -> (f64, String) {
    let started = Instant::now();
    let r = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let body = r.text().await.unwrap();
    (started.elapsed().as_secs_f64() * 1000.0, body)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn measure(http: &reqwest::Client, base: &str, stored: usize) -> Figures {
    let (cold_ms, _) = timed(http, base, "/ui/").await;
    // the count this size needs: one that names it
    let want = format!("{stored} stored tasks, counted");
    let started = Instant::now();
    let count_took = loop {
        let (_, body) = timed(http, base, "/ui/").await;
        if body.contains(&want) {
            let took = body.split("the count took ").nth(1).unwrap_or("");
            break took.split(')').next().unwrap_or("").to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no count of {stored} tasks"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let count_secs = started.elapsed().as_secs_f64();
    let mut overview = vec![];
    let mut by_state = vec![];
    let mut rare = vec![];
    for _ in 0..5 {
        overview.push(timed(http, base, "/ui/").await.0);
        by_state.push(timed(http, base, "/ui/tasks?state=new").await.0);
        rare.push(timed(http, base, "/ui/tasks?type=bench:rare").await.0);
    }
    Figures {
        stored,
        cold_ms,
        count_secs,
        count_took,
        overview_ms: median(overview),
        list_state_ms: median(by_state),
        list_rare_ms: median(rare),
    }
}
