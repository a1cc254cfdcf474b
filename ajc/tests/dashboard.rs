//! The web dashboard in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver with fantoccini) against `ajc
//! server run`, a real nats-server and a running worker: pages load without
//! script errors, a task enqueued meanwhile appears and turns complete
//! without a reload, a failed task's retry button re-runs it, a filtered
//! bulk retry re-enqueues exactly the matching tasks, read-only mode
//! refuses actions, a task cancelled from its page never runs, a queue
//! paused and resumed from the overview holds a
//! task back and then runs it, pages fit a phone's width. Flow control
//! (issue 32): a task's priority and key in the task list (live and
//! rendered) and on its page, a batch's page (its counts reaching done,
//! its retry re-running the failed member and the callback, its cancel
//! stopping a running member), a queue's rate limit, key limits and
//! priority aging set and removed through the overview's Configure form,
//! shown in its Flow column and reported by the HTTP API. The workers
//! page (issue 33): a worker's tries and a queue pulled only by a worker
//! that does not announce itself; a schedule's next fire time, its "Run
//! now", its pause and resume.
//!
//! `UPDATE_SCREENSHOTS=1` writes the overview, task list, task page and
//! workers page to `docs/` (shown in the README).

mod support;

use asyncjobs::{Router, Task, TaskContext, TaskState};
use asyncjobs_tests::{wait_for, NatsServer};
use fantoccini::{Client as Browser, Locator};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use support::{http, ApiServer, T};

/// A chromedriver process and a headless Chromium session through it.
struct Driver {
    _process: tokio::process::Child,
    browser: Browser,
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path).chain(["/usr/bin".into(), "/usr/lib/chromium".into()]) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

impl Driver {
    async fn start() -> Driver {
        let driver = find_binary(&["chromedriver"]).expect(
            "chromedriver not found: install Debian's chromium and chromium-driver (scripts/test does)",
        );
        let chromium = find_binary(&["chromium", "chromium-browser", "google-chrome"])
            .expect("chromium not found: install Debian's chromium (scripts/test does)");
        let port = asyncjobs_tests::free_port();
        let process = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        wait_for(T, "chromedriver to answer", || {
            let status = status.clone();
            async move {
                reqwest::get(&status)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        let profile = tempfile::tempdir().unwrap().keep();
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", format!("--user-data-dir={}", profile.display()),
                ]
            }
        }))
        .unwrap();
        let browser = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps)
        .connect(&url)
        .await
        .expect("a Chromium session");
        Driver {
            _process: process,
            browser,
        }
    }
}

/// Errors the page's script recorded (uncaught errors, failed loads).
async fn script_errors(b: &Browser) -> Vec<String> {
    let v = b
        .execute("return window.__errors || ['app.js did not run'];", vec![])
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Waits until every event stream of the page is open.
async fn streams_open(b: &Browser) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let open = b
            .execute(
                "return window.__sources.length > 0 && window.__sources.every(s => s.readyState === 1);",
                vec![],
            )
            .await
            .unwrap();
        if open == json!(true) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "event streams did not open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The text of the first element matching `css`, polled until `want`.
/// The whole wait is bounded, WebDriver calls included: a browser held up
/// (for example by connections left open by earlier pages) fails it.
async fn wait_text(b: &Browser, css: &str, want: &str) {
    let mut last = String::new();
    let polled = tokio::time::timeout(T, async {
        loop {
            if let Ok(e) = b.find(Locator::Css(css)).await {
                last = e.text().await.unwrap_or_default();
                if last == want {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "{css}: {last:?}, not {want:?}");
}

/// Clicks the element `at` (it must be there).
async fn click(b: &Browser, at: Locator<'_>) {
    b.find(at).await.unwrap().click().await.unwrap();
}

/// The text of the element `at` (it must be there).
async fn text(b: &Browser, at: Locator<'_>) -> String {
    b.find(at).await.unwrap().text().await.unwrap()
}

/// Clicks the button `id`, accepts the page's confirmation and waits for
/// its notice to read `notice`.
async fn click_confirmed(b: &Browser, id: &str, notice: &str) {
    click(b, Locator::Id(id)).await;
    b.accept_alert().await.unwrap();
    wait_text(b, ".notice", notice).await;
}

async fn create(http: &reqwest::Client, server: &ApiServer, body: Value) -> String {
    let r = http
        .post(server.url("/v1/tasks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

async fn task(http: &reqwest::Client, server: &ApiServer, id: &str) -> Value {
    http.get(server.url(&format!("/v1/tasks/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn screenshot(b: &Browser, name: &str) {
    if std::env::var_os("UPDATE_SCREENSHOTS").is_none() {
        return;
    }
    let png = b.screenshot().await.unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// How many times each task ran, by id (for the handlers that count).
type Runs = Arc<Mutex<HashMap<String, u32>>>;

/// Counts a run of task `id`; returns how many it has had.
fn count_run(runs: &Runs, id: &str) -> u32 {
    let mut r = runs.lock().unwrap();
    let n = r.entry(id.to_string()).or_default();
    *n += 1;
    *n
}

/// The pages' worker on the default queue: `ok` completes; `flaky` ends
/// for good on its first run and completes on the next; `render` reports
/// progress, then runs until cancelled; `dead:a` and `dead:b` always end
/// for good; `batch:done` (a callback) completes. `flaky`, the dead ones
/// and the callback count their runs in `runs`.
async fn start_worker(
    nats: &NatsServer,
    runs: &Runs,
) -> (asyncjobs::Client, asyncjobs_tests::RunningWorker) {
    let counting = |outcome: fn(u32) -> asyncjobs::HandlerResult| {
        let runs = runs.clone();
        move |_: TaskContext, t: Task| {
            let n = count_run(&runs, &t.id);
            async move { outcome(n) }
        }
    };
    let router = Router::new()
        .handle("ok", |_: TaskContext, _: Task| async {
            asyncjobs::handler::to_output(&json!({"fine": true}))
        })
        .unwrap()
        .handle(
            "flaky",
            counting(|n| {
                if n == 1 {
                    Err(asyncjobs::HandlerError::terminate(
                        "first run fails for good",
                    ))
                } else {
                    asyncjobs::handler::to_output(&json!({"run": n}))
                }
            }),
        )
        .unwrap()
        .handle("render", |ctx: TaskContext, _: Task| async move {
            // reports how far it is, then runs until cancelled
            ctx.progress(40, "frame 400 of 1000")?;
            ctx.cancelled().await;
            Err(asyncjobs::HandlerError::retry("stopped"))
        })
        .unwrap()
        .handle(
            "dead:a",
            counting(|_| Err(asyncjobs::HandlerError::terminate("dead letter"))),
        )
        .unwrap()
        .handle(
            "dead:b",
            counting(|_| Err(asyncjobs::HandlerError::terminate("dead letter"))),
        )
        .unwrap()
        .handle(
            "batch:done",
            counting(|_| asyncjobs::handler::to_output(&json!({"all": true}))),
        )
        .unwrap();
    let client = asyncjobs::Client::builder()
        .url(nats.url())
        .queue(asyncjobs::Queue::default_queue())
        .build()
        .await
        .unwrap();
    let worker = asyncjobs_tests::spawn_worker(client.worker(router));
    (client, worker)
}

#[tokio::test]
async fn dashboard_in_a_browser() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let http = http();

    let runs = Runs::default();
    let (worker_client, worker) = start_worker(&nats, &runs).await;

    let driver = Driver::start().await;
    let b = &driver.browser;

    // the overview loads without script errors and shows the queue and worker
    b.goto(&server.url("/ui/")).await.unwrap();
    assert_eq!(b.title().await.unwrap(), "Overview · asyncjobs");
    assert!(b.find(Locator::LinkText("DEFAULT")).await.is_ok());
    streams_open(b).await;
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    // the task list: a task enqueued now appears and turns complete, no reload
    b.goto(&server.url("/ui/tasks")).await.unwrap();
    streams_open(b).await;
    b.execute("window.__sameDocument = true;", vec![])
        .await
        .unwrap();
    let id = create(&http, &server, json!({"type": "ok"})).await;
    wait_text(b, &format!("tr[data-id='{id}'] [data-state]"), "complete").await;
    assert_eq!(
        b.execute("return window.__sameDocument === true;", vec![])
            .await
            .unwrap(),
        json!(true),
        "the page was reloaded"
    );
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    // what happens while no stream is open (before the first one opens, or
    // between a lost stream and its reconnection) shows once one opens
    b.execute("window.__sources.forEach(s => s.close());", vec![])
        .await
        .unwrap();
    let unseen = create(&http, &server, json!({"type": "ok"})).await;
    wait_for(
        T,
        "the task created while no stream was open to complete",
        || {
            let (http, server, unseen) = (&http, &server, &unseen);
            async move { (task(http, server, unseen).await["state"] == "complete").then_some(()) }
        },
    )
    .await;
    assert!(
        b.find(Locator::Css(&format!("tr[data-id='{unseen}']")))
            .await
            .is_err(),
        "no stream was open: the row cannot be there yet"
    );
    b.execute(
        "liveTasks(document.querySelector('[data-live-tasks]'));",
        vec![],
    )
    .await
    .unwrap();
    wait_text(
        b,
        &format!("tr[data-id='{unseen}'] [data-state]"),
        "complete",
    )
    .await;
    wait_text(b, &format!("tr[data-id='{id}'] [data-state]"), "complete").await;
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    // a failed task's retry button runs it again
    let flaky = create(
        &http,
        &server,
        json!({"type": "flaky", "payload": {"order": 42}}),
    )
    .await;
    wait_for(T, "the flaky task to end", || {
        let (http, server, flaky) = (&http, &server, &flaky);
        async move { (task(http, server, flaky).await["state"] == "terminated").then_some(()) }
    })
    .await;
    b.goto(&server.url(&format!("/ui/tasks/{flaky}")))
        .await
        .unwrap();
    wait_text(b, "[data-state]", "terminated").await;
    streams_open(b).await;
    click_confirmed(b, "retry", "Task enqueued again").await;
    streams_open(b).await;
    // the record first: what the page shows comes from its events
    wait_for(T, "the retried task to complete", || {
        let (http, server, flaky) = (&http, &server, &flaky);
        async move { (task(http, server, flaky).await["state"] == "complete").then_some(()) }
    })
    .await;
    wait_text(b, "[data-state]", "complete").await;
    let done = task(&http, &server, &flaky).await;
    assert_eq!(done["state"], "complete");
    assert_eq!(done["tries"], 2);
    assert_eq!(script_errors(b).await, Vec::<String>::new());
    b.goto(&server.url(&format!("/ui/tasks/{flaky}")))
        .await
        .unwrap();
    screenshot(b, "dashboard-task.png").await;

    // a filtered bulk retry re-enqueues exactly the matching tasks
    let mut a_ids = vec![];
    let mut b_ids = vec![];
    for _ in 0..3 {
        a_ids.push(create(&http, &server, json!({"type": "dead:a"})).await);
        b_ids.push(create(&http, &server, json!({"type": "dead:b"})).await);
    }
    wait_for(T, "the dead letters", || {
        let (http, server, ids) = (
            &http,
            &server,
            a_ids.iter().chain(&b_ids).collect::<Vec<_>>(),
        );
        async move {
            for id in ids {
                if task(http, server, id).await["state"] != "terminated" {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    b.goto(&server.url("/ui/tasks?state=terminated&type=dead%3Aa"))
        .await
        .unwrap();
    assert_eq!(
        b.find_all(Locator::Css("#tasks tbody tr"))
            .await
            .unwrap()
            .len(),
        3
    );
    click(b, Locator::Id("bulk-retry")).await;
    wait_text(b, "h1", "Retry matching tasks").await;
    let listed = b.find_all(Locator::Css("ul.ids li")).await.unwrap().len();
    assert_eq!(listed, 3);
    click(b, Locator::Id("confirm")).await;
    wait_text(b, ".notice", "3 tasks enqueued again").await;
    wait_for(T, "the matching tasks to run again", || {
        let runs = runs.clone();
        let a_ids = a_ids.clone();
        async move {
            let r = runs.lock().unwrap();
            a_ids.iter().all(|id| r.get(id) == Some(&2)).then_some(())
        }
    })
    .await;
    {
        let r = runs.lock().unwrap();
        for id in &b_ids {
            assert_eq!(r.get(id), Some(&1), "{id} was not to be retried");
        }
    }
    for id in &b_ids {
        assert_eq!(task(&http, &server, id).await["tries"], 1);
    }

    // a running task's page shows its progress; cancelled from there, its
    // handler is stopped and it ends terminated (issue 31)
    let running = create(&http, &server, json!({"type": "render"})).await;
    b.goto(&server.url(&format!("/ui/tasks/{running}")))
        .await
        .unwrap();
    let mut shown = String::new();
    for _ in 0..200 {
        b.refresh().await.unwrap();
        if let Ok(e) = b.find(Locator::Css("[data-progress-text]")).await {
            shown = e.text().await.unwrap_or_default();
            if shown == "40% frame 400 of 1000" {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(shown, "40% frame 400 of 1000");
    let bar = b
        .find(Locator::Css("[data-progress] progress"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap();
    assert_eq!(bar.as_deref(), Some("40"));
    wait_text(b, "[data-state]", "active").await;
    click_confirmed(
        b,
        "cancel",
        "Task cancelled: its worker stops the running handler",
    )
    .await;
    wait_for(T, "the running task to end cancelled", || async {
        let t = task(&http, &server, &running).await;
        (t["state"] == "terminated").then_some(t)
    })
    .await;

    // pause the queue from the overview: a task enqueued meanwhile waits,
    // and runs once the queue is resumed from the same page
    b.goto(&server.url("/ui/")).await.unwrap();
    click(
        b,
        Locator::XPath("//tr[td/a[text()='DEFAULT']]//details[summary[text()='Pause']]/summary"),
    )
    .await;
    click(
        b,
        Locator::XPath("//tr[td/a[text()='DEFAULT']]//form[contains(@action,'/pause')]//button"),
    )
    .await;
    wait_text(b, ".notice", "Queue DEFAULT paused until resumed").await;
    let badge = text(b, Locator::Css("[data-paused]")).await;
    assert!(badge.starts_with("paused until resumed, since "), "{badge}");
    let held = create(&http, &server, json!({"type": "ok"})).await;
    wait_for(T, "the task held back by the pause", || async {
        let i = worker_client.queue_info("DEFAULT").await.unwrap();
        (i.waiting >= 1 && i.pending == 1 && i.ack_pending == 0).then_some(())
    })
    .await;
    assert_eq!(task(&http, &server, &held).await["state"], "new");
    // a task cancelled from its page while it waits never runs (issue 31)
    let doomed = create(&http, &server, json!({"type": "ok"})).await;
    b.goto(&server.url(&format!("/ui/tasks/{doomed}")))
        .await
        .unwrap();
    wait_text(b, "[data-state]", "new").await;
    click_confirmed(b, "cancel", "Task cancelled: it will not run").await;
    wait_text(b, "[data-state]", "terminated").await;
    wait_text(b, "[data-last-err]", "cancelled by the dashboard").await;
    assert!(
        b.find(Locator::Id("cancel")).await.is_err(),
        "a finished task has no cancel button"
    );
    b.goto(&server.url("/ui/")).await.unwrap();
    click(
        b,
        Locator::XPath("//tr[td/a[text()='DEFAULT']]//form[contains(@action,'/resume')]//button"),
    )
    .await;
    wait_text(b, ".notice", "Queue DEFAULT resumed").await;
    assert!(b.find(Locator::Css("[data-paused]")).await.is_err());
    wait_for(T, "the held task to complete", || async {
        (task(&http, &server, &held).await["state"] == "complete").then_some(())
    })
    .await;
    let still = task(&http, &server, &doomed).await;
    assert_eq!(still["state"], "terminated", "{still}");
    // Go's layout leaves out a zero `tries`
    assert!(
        still.get("tries").is_none(),
        "the cancelled task never ran: {still}"
    );

    // the list and the overview after all this, and at phone width
    b.goto(&server.url("/ui/tasks")).await.unwrap();
    screenshot(b, "dashboard-tasks.png").await;
    b.goto(&server.url("/ui/")).await.unwrap();
    streams_open(b).await;
    screenshot(b, "dashboard-overview.png").await;
    b.set_window_size(390, 844).await.unwrap();
    for path in [
        "/ui/",
        "/ui/tasks",
        &format!("/ui/tasks/{flaky}"),
        "/ui/schedules",
    ] {
        b.goto(&server.url(path)).await.unwrap();
        let fits = b
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, json!(true), "{path} is wider than a phone");
    }
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    // read-only: no action buttons, and a POST is refused
    let ro = ApiServer::start(&nats.url(), &["--allow-create-default", "--read-only"]).await;
    b.goto(&ro.url(&format!("/ui/tasks/{}", b_ids[0])))
        .await
        .unwrap();
    assert!(b.find(Locator::Id("retry")).await.is_err());
    assert!(b.find(Locator::Css(".badge.ro")).await.is_ok());
    let r = http
        .post(ro.url(&format!("/ui/tasks/{}/retry", b_ids[0])))
        .form(&[("csrf", "x"), ("confirmed", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("read-only"));
    assert_eq!(task(&http, &server, &b_ids[0]).await["tries"], 1);
    // and in normal mode a cross-site or token-less POST is refused too
    let r = http
        .post(server.url(&format!("/ui/tasks/{}/retry", b_ids[0])))
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("csrf", "x"), ("confirmed", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(server.url(&format!("/ui/tasks/{}/retry", b_ids[0])))
        .form(&[("csrf", "forged"), ("confirmed", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(task(&http, &server, &b_ids[0]).await["tries"], 1);

    driver.browser.close().await.unwrap();
    worker.stop().await;
    let _ = TaskState::Complete;
}

/// The text of the first element matching `css` on the page at `url`,
/// loaded again until it is `want` (for pages without live updates). The
/// whole wait is bounded, WebDriver calls included.
async fn wait_text_reloading(b: &Browser, url: &str, css: &str, want: &str) {
    let mut last = String::new();
    let polled = tokio::time::timeout(T, async {
        loop {
            b.goto(url).await.unwrap();
            if let Ok(e) = b.find(Locator::Css(css)).await {
                last = e.text().await.unwrap_or_default();
                if last == want {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "{url} {css}: {last:?}, not {want:?}");
}

async fn get(http: &reqwest::Client, server: &ApiServer, path: &str) -> Value {
    http.get(server.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Submits the Configure form of `queue`'s row on the overview with
/// `fields` filled in, and waits for the server's notice.
async fn configure_on_overview(
    b: &Browser,
    server: &ApiServer,
    queue: &str,
    fields: &[(&str, &str)],
) {
    b.goto(&server.url("/ui/")).await.unwrap();
    let row = format!("//tr[td/a[text()='{queue}']]");
    b.find(Locator::XPath(&format!(
        "{row}//details[summary[text()='Configure']]/summary"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let form = b
        .find(Locator::XPath(&format!(
            "{row}//form[contains(@action,'/configure')]"
        )))
        .await
        .unwrap();
    for (name, value) in fields {
        form.find(Locator::Css(&format!("input[name='{name}']")))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(b, ".notice", &format!("Queue {queue} configured")).await;
}

/// Flow control on the pages (issue 32): a task's priority and key in the
/// task list (rendered, and filled in for a row added live) and on its
/// page; a batch's page with its counts, its retry re-running the failed
/// member and then the callback, its cancel stopping a running member;
/// the queue's flow settings set and removed through the overview's
/// Configure form, shown in its Flow column and stored (the HTTP API
/// reports them).
#[tokio::test]
async fn flow_control_on_the_pages() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let http = http();

    let runs = Runs::default();
    let (_worker_client, worker) = start_worker(&nats, &runs).await;

    let driver = Driver::start().await;
    let b = &driver.browser;

    // the task list: rows added live get their priority and key from the
    // record (the default priority, 0, shows empty)
    b.goto(&server.url("/ui/tasks")).await.unwrap();
    streams_open(b).await;
    let urgent = create(&http, &server, json!({"type": "ok", "priority": 7})).await;
    let keyed = create(&http, &server, json!({"type": "ok", "key": "tenant-a"})).await;
    wait_text(b, &format!("tr[data-id='{urgent}'] [data-priority]"), "7").await;
    wait_text(b, &format!("tr[data-id='{keyed}'] [data-key]"), "tenant-a").await;
    wait_text(
        b,
        &format!("tr[data-id='{urgent}'] [data-state]"),
        "complete",
    )
    .await;
    wait_text(
        b,
        &format!("tr[data-id='{keyed}'] [data-state]"),
        "complete",
    )
    .await;
    for (id, priority, key) in [(&urgent, "7", ""), (&keyed, "", "tenant-a")] {
        let row = format!("tr[data-id='{id}']");
        wait_text(b, &format!("{row} [data-priority]"), priority).await;
        wait_text(b, &format!("{row} [data-key]"), key).await;
    }
    assert_eq!(script_errors(b).await, Vec::<String>::new());
    // and as the server renders them
    b.goto(&server.url("/ui/tasks")).await.unwrap();
    for (id, priority, key) in [(&urgent, "7", ""), (&keyed, "", "tenant-a")] {
        let row = format!("tr[data-id='{id}']");
        wait_text(b, &format!("{row} [data-priority]"), priority).await;
        wait_text(b, &format!("{row} [data-key]"), key).await;
    }
    streams_open(b).await;
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    // the task pages: priority, and the key when there is one
    b.goto(&server.url(&format!("/ui/tasks/{urgent}")))
        .await
        .unwrap();
    wait_text(b, "[data-priority]", "7").await;
    assert!(
        b.find(Locator::Css("[data-key]")).await.is_err(),
        "a task without a key shows none"
    );
    streams_open(b).await;
    assert_eq!(script_errors(b).await, Vec::<String>::new());
    b.goto(&server.url(&format!("/ui/tasks/{keyed}")))
        .await
        .unwrap();
    wait_text(b, "[data-priority]", "0 (the default)").await;
    wait_text(b, "[data-key]", "tenant-a").await;
    let key_label = text(
        b,
        Locator::XPath("//dt[following-sibling::dd[1][@data-key]]"),
    )
    .await;
    assert_eq!(key_label, "Key");
    streams_open(b).await;
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    // a batch whose member fails: its page shows the counts reached once
    // the worker has run it all (the callback is refused until the worker
    // has announced that it handles `batch:done`)
    let batch = wait_for(T, "the batch to be created", || {
        let (http, server) = (&http, &server);
        async move {
            let r = http
                .post(server.url("/v1/batches"))
                .json(&json!({
                    "members": [{"type": "ok"}, {"type": "flaky"}],
                    "callback": {"type": "batch:done"},
                }))
                .send()
                .await
                .unwrap();
            if r.status() == 409 {
                return None;
            }
            assert_eq!(r.status(), 201);
            Some(r.json::<Value>().await.unwrap())
        }
    })
    .await;
    let id = batch["id"].as_str().unwrap().to_string();
    let members: Vec<String> = serde_json::from_value(batch["members"].clone()).unwrap();
    let flaky = members[1].clone();
    let callback = batch["callback"].as_str().unwrap().to_string();
    let page = server.url(&format!("/ui/batches/{id}"));
    wait_text_reloading(
        b,
        &page,
        "[data-batch-counts]",
        "2: 1 done, 1 failed, 0 pending (finished)",
    )
    .await;
    wait_text(b, "[data-batch-callback] .badge", "complete").await;
    screenshot(b, "batch.png").await;
    wait_text(
        b,
        &format!("#members tr[data-id='{flaky}'] .badge"),
        "terminated",
    )
    .await;
    wait_text(
        b,
        &format!("#members tr[data-id='{flaky}'] .err"),
        "first run fails for good",
    )
    .await;
    assert!(
        b.find(Locator::Id("cancel-batch")).await.is_err(),
        "a finished batch has no cancel button"
    );
    assert_eq!(script_errors(b).await, Vec::<String>::new());
    assert_eq!(runs.lock().unwrap().get(&callback), Some(&1));
    // a member's page links to it
    b.goto(&server.url(&format!("/ui/tasks/{flaky}")))
        .await
        .unwrap();
    click(b, Locator::Css("[data-batch] a")).await;
    wait_text(b, "h1", &format!("Batch {id}")).await;
    // retried from its page: the failed member runs again, then the
    // callback once more
    click_confirmed(b, "retry-batch", "Batch retried: 1 members").await;
    wait_text_reloading(
        b,
        &page,
        "[data-batch-counts]",
        "2: 2 done, 0 failed, 0 pending (finished)",
    )
    .await;
    wait_text(
        b,
        &format!("#members tr[data-id='{flaky}'] .badge"),
        "complete",
    )
    .await;
    wait_text_reloading(b, &page, "[data-batch-callback] .badge", "complete").await;
    let t = task(&http, &server, &flaky).await;
    assert_eq!(
        (t["state"].clone(), t["tries"].clone()),
        (json!("complete"), json!(2))
    );
    wait_for(T, "the callback to run again", || {
        let runs = runs.clone();
        let callback = callback.clone();
        async move { (runs.lock().unwrap().get(&callback) == Some(&2)).then_some(()) }
    })
    .await;
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    // a batch cancelled from its page: its running member is stopped
    let r = http
        .post(server.url("/v1/batches"))
        .json(&json!({"members": [{"type": "render"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let running: Value = r.json().await.unwrap();
    let (id, member) = (
        running["id"].as_str().unwrap().to_string(),
        running["members"][0].as_str().unwrap().to_string(),
    );
    wait_for(T, "the member to run", || {
        let (http, server, member) = (&http, &server, &member);
        async move { (task(http, server, member).await["state"] == "active").then_some(()) }
    })
    .await;
    let page = server.url(&format!("/ui/batches/{id}"));
    b.goto(&page).await.unwrap();
    wait_text(b, "[data-batch-counts]", "1: 0 done, 0 failed, 1 pending").await;
    click_confirmed(
        b,
        "cancel-batch",
        "Batch cancelled: 1 tasks cancelled, 0 had ended",
    )
    .await;
    wait_text_reloading(
        b,
        &page,
        "[data-batch-counts]",
        "1: 0 done, 1 failed, 0 pending (finished)",
    )
    .await;
    wait_text(
        b,
        &format!("#members tr[data-id='{member}'] .badge"),
        "terminated",
    )
    .await;
    assert!(b.find(Locator::Id("cancel-batch")).await.is_err());
    let t = task(&http, &server, &member).await;
    assert_eq!(t["state"], "terminated", "{t}");
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    // the queue's flow settings through the overview's Configure form:
    // shown in the Flow column and stored
    b.goto(&server.url("/ui/")).await.unwrap();
    let flow = "//tr[td/a[text()='DEFAULT']]/td[@data-flow]";
    assert_eq!(
        text(b, Locator::XPath(flow)).await,
        "",
        "no flow settings yet"
    );
    configure_on_overview(
        b,
        &server,
        "DEFAULT",
        &[
            ("rate_limit", "20/s"),
            ("key_concurrency", "3"),
            ("key_rate_limit", "2/s"),
            ("priority_aging", "30s"),
        ],
    )
    .await;
    assert_eq!(
        text(b, Locator::XPath(flow)).await,
        "20/s · key 3 · key 2/s · aging 30s"
    );
    // the form shows the settings it would change
    for (name, now) in [
        ("rate_limit", "20/s"),
        ("key_concurrency", "3"),
        ("key_rate_limit", "2/s"),
        ("priority_aging", "30s"),
    ] {
        let shown = b
            .find(Locator::XPath(&format!(
                "//tr[td/a[text()='DEFAULT']]//input[@name='{name}']"
            )))
            .await
            .unwrap()
            .attr("placeholder")
            .await
            .unwrap();
        assert_eq!(shown.as_deref(), Some(now), "{name}");
    }
    let q = get(&http, &server, "/v1/queues/DEFAULT").await;
    assert_eq!(q["rate_limit"], "20/s", "{q}");
    assert_eq!(q["key_concurrency"], 3, "{q}");
    assert_eq!(q["key_rate_limit"], "2/s", "{q}");
    assert_eq!(q["priority_aging"], 30_000_000_000i64, "{q}");
    assert_eq!(script_errors(b).await, Vec::<String>::new());
    // `none` and `strict` remove settings; the others stay
    configure_on_overview(
        b,
        &server,
        "DEFAULT",
        &[("rate_limit", "none"), ("priority_aging", "strict")],
    )
    .await;
    assert_eq!(text(b, Locator::XPath(flow)).await, "key 3 · key 2/s");
    let q = get(&http, &server, "/v1/queues/DEFAULT").await;
    assert!(q.get("rate_limit").is_none(), "{q}");
    assert!(q.get("priority_aging").is_none(), "{q}");
    assert_eq!(q["key_concurrency"], 3, "{q}");
    assert_eq!(q["key_rate_limit"], "2/s", "{q}");
    // a keyed task still runs under the stored limits
    let later = create(
        &http,
        &server,
        json!({"type": "ok", "key": "tenant-a", "priority": 9}),
    )
    .await;
    wait_for(T, "the keyed task to complete", || {
        let (http, server, later) = (&http, &server, &later);
        async move { (task(http, server, later).await["state"] == "complete").then_some(()) }
    })
    .await;
    streams_open(b).await;
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    driver.browser.close().await.unwrap();
    worker.stop().await;
}

/// Without script every page still works: actions go through the
/// server's confirmation page (plain HTTP, no browser).
#[tokio::test]
async fn actions_without_script_confirm_on_a_page() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let http = http();
    let id = create(&http, &server, json!({"type": "later"})).await;
    let page = http
        .get(server.url(&format!("/ui/tasks/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a csrf field")
        .to_string();
    // the first POST asks
    let r = http
        .post(server.url(&format!("/ui/tasks/{id}/delete")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Delete task") && body.contains("name=\"confirmed\" value=\"1\""),
        "{body}"
    );
    assert_eq!(task(&http, &server, &id).await["id"], id.as_str());
    // the confirmed POST acts and redirects with a notice
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .post(server.url(&format!("/ui/tasks/{id}/delete")))
        .form(&[("csrf", csrf.as_str()), ("confirmed", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/ui/tasks?notice="));
    let r = http
        .get(server.url(&format!("/v1/tasks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // queue and schedule forms act too
    let form = |path: String, fields: Vec<(&'static str, String)>| {
        let no_redirect = no_redirect.clone();
        let url = server.url(&path);
        async move {
            let r = no_redirect.post(url).form(&fields).send().await.unwrap();
            assert_eq!(
                r.status(),
                303,
                "{path}: {}",
                r.text().await.unwrap_or_default()
            );
        }
    };
    form(
        "/ui/queues/DEFAULT/configure".into(),
        vec![
            ("csrf", csrf.clone()),
            ("max_tries", "7".into()),
            ("max_run_time", "2m".into()),
        ],
    )
    .await;
    let q: Value = http
        .get(server.url("/v1/queues/DEFAULT"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (q["max_tries"].clone(), q["max_runtime"].clone()),
        (json!(7), json!(120_000_000_000i64))
    );
    create(&http, &server, json!({"type": "waiting"})).await;
    form(
        "/ui/queues/DEFAULT/purge".into(),
        vec![("csrf", csrf.clone()), ("confirmed", "1".into())],
    )
    .await;
    let lib = asyncjobs::Client::builder()
        .url(nats.url())
        .no_storage_init()
        .build()
        .await
        .unwrap();
    assert_eq!(lib.queue_info("DEFAULT").await.unwrap().stream.messages, 0);
    form(
        "/ui/schedules".into(),
        vec![
            ("csrf", csrf.clone()),
            ("name", "nightly".into()),
            ("schedule", "0 3 * * *".into()),
            ("queue", "DEFAULT".into()),
            ("task_type", "report:nightly".into()),
            ("payload", r#"{"full":true}"#.into()),
        ],
    )
    .await;
    let s: Value = http
        .get(server.url("/v1/schedules/nightly"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["schedule"], "0 3 * * *");
    let page = http
        .get(server.url("/ui/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("nightly"), "the overview lists schedules");
    // no scheduler runs: the schedule is marked unfired on both pages
    // (docs/processing.md §2.20)
    assert!(
        page.contains("data-unfired"),
        "the overview marks it unfired"
    );
    let listing = http
        .get(server.url("/ui/schedules"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = listing
        .split("<tr>")
        .find(|r| r.contains("<td>nightly</td>"))
        .expect("the schedules page lists nightly");
    assert!(
        row.contains("data-unfired") && row.contains(">unfired<"),
        "{row}"
    );
    form(
        "/ui/schedules/nightly/delete".into(),
        vec![("csrf", csrf.clone()), ("confirmed", "1".into())],
    )
    .await;
    let r = http
        .get(server.url("/v1/schedules/nightly"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // the dashboard can be turned off
    let off = ApiServer::start(&nats.url(), &["--allow-create-default", "--no-ui"]).await;
    let r = http.get(off.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// Issue 30 item 4: a queue with items waiting that no running worker
/// serves carries a badge on the overview, and its waiting task's page
/// says so; once a worker serves it the badge goes.
#[tokio::test]
async fn an_unserved_queue_is_flagged() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let client = asyncjobs::Client::builder()
        .url(nats.url())
        .queue(asyncjobs::Queue::new("LONELY"))
        .build()
        .await
        .unwrap();
    let mut task = Task::new("image:resize", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();

    let driver = Driver::start().await;
    let b = &driver.browser;
    b.goto(&server.url("/ui/")).await.unwrap();
    let badges = b.find_all(Locator::Css("[data-unserved]")).await.unwrap();
    assert_eq!(badges.len(), 1, "only LONELY has items waiting");
    assert_eq!(
        badges[0].text().await.unwrap(),
        "no worker is serving this queue"
    );
    let row = b
        .find(Locator::XPath("//tr[.//span[@data-unserved]]//a"))
        .await
        .unwrap();
    assert_eq!(row.text().await.unwrap(), "LONELY");
    assert!(b.find(Locator::Css("[data-presence-off]")).await.is_err());
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    b.goto(&server.url(&format!("/ui/tasks/{}", task.id)))
        .await
        .unwrap();
    let said = text(b, Locator::Css("p[data-unserved]")).await;
    assert!(
        said.starts_with("no running worker serves queue LONELY"),
        "{said}"
    );

    // a worker of LONELY that does not handle the type: the page says so
    let router = Router::new()
        .handle("email:new", |_: TaskContext, _: Task| async {
            asyncjobs::handler::to_output(&())
        })
        .unwrap();
    let worker = asyncjobs_tests::spawn_worker(client.worker(router));
    let page = server.url(&format!("/ui/tasks/{}", task.id));
    let deadline = tokio::time::Instant::now() + T;
    loop {
        b.goto(&page).await.unwrap();
        let said = match b.find(Locator::Css("p[data-unserved]")).await {
            Ok(e) => e.text().await.unwrap(),
            Err(_) => String::new(),
        };
        if said.starts_with("no running worker handles task type image:resize on queue LONELY") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task page: {said:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // and the queue is served: no badge
    let deadline = tokio::time::Instant::now() + T;
    loop {
        b.goto(&server.url("/ui/")).await.unwrap();
        if b.find_all(Locator::Css("[data-unserved]"))
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the badge stays");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    worker.stop().await;
}

/// The workers page (issue 33): a running worker with its version,
/// concurrency, heartbeat and the try it runs (a link to the task), and a
/// queue pulled only by a worker that does not announce itself (a raw pull
/// request on its `WORKERS` consumer, as a Go worker keeps one) listed as
/// served by such workers; reached from the menu.
#[tokio::test]
async fn the_workers_page_shows_every_worker() {
    use futures::StreamExt;
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let runs = Runs::default();
    let (client, worker) = start_worker(&nats, &runs).await;
    let mut task = Task::new("render", &()).unwrap();
    client.enqueue(&mut task).await.unwrap();
    asyncjobs_tests::wait_for_state(&client, &task.id, TaskState::Active, T).await;

    // a Go-like worker of queue GOQ: one pull request waiting, no presence
    let goq = asyncjobs::Client::builder()
        .url(nats.url())
        .queue(asyncjobs::Queue::new("GOQ"))
        .build()
        .await
        .unwrap();
    let js = async_nats::jetstream::new(goq.nats().clone());
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("WORKERS", "CHORIA_AJ_Q_GOQ")
        .await
        .unwrap();
    let mut pull = consumer
        .fetch()
        .max_messages(1)
        .expires(std::time::Duration::from_secs(60))
        .messages()
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { pull.next().await.is_some() });

    let driver = Driver::start().await;
    let b = &driver.browser;
    b.goto(&server.url("/ui/")).await.unwrap();
    click(b, Locator::LinkText("Workers")).await;
    let page = server.url("/ui/workers");
    wait_text_reloading(b, &page, "tr[data-worker] td[data-running]", "1").await;
    let link = b
        .find(Locator::Css("tr[data-worker] a[href^='/ui/tasks/']"))
        .await
        .unwrap();
    assert_eq!(link.text().await.unwrap(), task.id);
    let row = text(b, Locator::Css("tr[data-worker]")).await;
    assert!(row.contains(env!("CARGO_PKG_VERSION")), "{row}");
    assert!(row.contains("s ago"), "{row}");
    wait_text_reloading(
        b,
        &page,
        "tr[data-queue='GOQ'] td[data-unannounced]",
        "serving this queue: none announces itself, yet its consumer is pulled (Go workers, or a server too old for presence)",
    )
    .await;
    let default_queue = text(
        b,
        Locator::Css("tr[data-queue='DEFAULT'] td[data-unannounced]"),
    )
    .await;
    assert_eq!(default_queue, "none seen");
    assert_eq!(script_errors(b).await, Vec::<String>::new());
    screenshot(b, "workers.png").await;

    // the try opens its task's page
    click(b, Locator::Css("tr[data-worker] a[href^='/ui/tasks/']")).await;
    wait_text(b, "h1 code", &task.id).await;
    waiting.abort();
    worker.stop().await;
}

/// The schedules page (issue 33): each schedule's next fire time, and
/// "Run now" creating a task from it at once (after the page's
/// confirmation), which lands on the new task's page; the task has the
/// schedule's type and queue and the schedule is unchanged. Pause marks
/// it paused (stored), Resume shows its next fire time again.
#[tokio::test]
async fn a_schedule_runs_now_from_its_page() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let client = asyncjobs::Client::builder()
        .url(nats.url())
        .queue(asyncjobs::Queue::new("NIGHTLY"))
        .build()
        .await
        .unwrap();
    let template = Task::new("report:nightly", &json!({"full": true})).unwrap();
    let st = client
        .new_scheduled_task("nightly", "0 3 * * *", "NIGHTLY", &template)
        .await
        .unwrap();
    let next = st.next_fire(time::OffsetDateTime::now_utc()).unwrap();

    let driver = Driver::start().await;
    let b = &driver.browser;
    b.goto(&server.url("/ui/schedules")).await.unwrap();
    let shown = text(b, Locator::Css("td[data-next]")).await;
    let at = asyncjobs::wire::format_time(&next);
    assert!(shown.starts_with(&at[..19]), "{shown} vs {at}");
    assert!(shown.contains("(in "), "{shown}");
    screenshot(b, "schedules.png").await;
    click(b, Locator::Id("run-nightly")).await;
    b.accept_alert().await.unwrap();
    let notice = tokio::time::timeout(T, async {
        loop {
            if let Ok(e) = b.find(Locator::Css(".notice")).await {
                let text = e.text().await.unwrap_or_default();
                if text.starts_with("Task ") {
                    return text;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the run's notice");
    let id = notice
        .strip_prefix("Task ")
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    assert_eq!(notice, format!("Task {id} created from schedule nightly"));
    wait_text(b, "h1 code", &id).await;
    let task = client.load_task(&id).await.unwrap();
    assert_eq!(
        (task.task_type.as_str(), task.queue.as_str()),
        ("report:nightly", "NIGHTLY")
    );
    let still = client.load_scheduled_task("nightly").await.unwrap();
    assert_eq!(still.schedule, "0 3 * * *");
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    // paused and resumed from the page
    b.goto(&server.url("/ui/schedules")).await.unwrap();
    click_confirmed(b, "pause-nightly", "Schedule nightly paused").await;
    wait_text(b, "td[data-next]", "paused").await;
    assert!(client.load_scheduled_task("nightly").await.unwrap().paused);
    click_confirmed(b, "resume-nightly", "Schedule nightly resumed").await;
    let shown = text(b, Locator::Css("td[data-next]")).await;
    assert!(shown.starts_with(&at[..19]), "{shown}");
    assert!(!client.load_scheduled_task("nightly").await.unwrap().paused);
    assert_eq!(script_errors(b).await, Vec::<String>::new());
}

/// Bulk actions by filter (issue 33): the task list filtered by type,
/// "Cancel every matching task…" confirms on a page that says how many
/// tasks it will touch and lists them, then cancels exactly those (the
/// other type's task keeps waiting) and sums up; "Delete every matching
/// task…" then deletes them.
#[tokio::test]
async fn matching_tasks_are_cancelled_and_deleted_in_bulk() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    // no worker: every task waits
    let client = asyncjobs::Client::builder()
        .url(nats.url())
        .queue(asyncjobs::Queue::new("BULK"))
        .build()
        .await
        .unwrap();
    let mut doomed = vec![];
    for i in 0..4 {
        let mut t = Task::new("bulk:doomed", &i).unwrap();
        client.enqueue(&mut t).await.unwrap();
        doomed.push(t.id);
    }
    let mut kept = Task::new("bulk:kept", &()).unwrap();
    client.enqueue(&mut kept).await.unwrap();

    let driver = Driver::start().await;
    let b = &driver.browser;
    let list = server.url("/ui/tasks?queue=BULK&type=bulk:doomed");
    b.goto(&list).await.unwrap();
    click(b, Locator::Id("bulk-cancel")).await;
    wait_text(b, "h1", "Cancel matching tasks").await;
    let said = text(b, Locator::Css("main p")).await;
    assert!(said.starts_with("4 tasks match."), "{said}");
    assert_eq!(
        b.find_all(Locator::Css("ul.ids li")).await.unwrap().len(),
        4
    );
    screenshot(b, "bulk-confirm.png").await;
    click(b, Locator::Id("confirm")).await;
    wait_text(b, ".notice", "4 tasks cancelled").await;
    for id in &doomed {
        let t = client.load_task(id).await.unwrap();
        assert_eq!(t.state, TaskState::Terminated, "{id}");
        assert!(
            t.last_err.contains("an operator (dashboard)"),
            "{}",
            t.last_err
        );
    }
    assert_eq!(
        client.load_task(&kept.id).await.unwrap().state,
        TaskState::New
    );

    b.goto(&list).await.unwrap();
    click(b, Locator::Id("bulk-delete")).await;
    wait_text(b, "h1", "Delete matching tasks").await;
    click(b, Locator::Id("confirm")).await;
    wait_text(b, ".notice", "4 tasks deleted").await;
    for id in &doomed {
        assert!(matches!(
            client.load_task(id).await,
            Err(asyncjobs::Error::TaskNotFound(_))
        ));
    }
    assert_eq!(
        client.load_task(&kept.id).await.unwrap().state,
        TaskState::New
    );
    assert_eq!(script_errors(b).await, Vec::<String>::new());
}

/// Signs the browser in with `token` on the sign-in page and waits for
/// the header to name `me`.
async fn sign_in(b: &Browser, server: &ApiServer, token: &str, me: &str) {
    b.goto(&server.url("/ui/login")).await.unwrap();
    b.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(b, Locator::Css("form[data-login] button")).await;
    wait_text(b, "[data-me]", me).await;
}

/// Roles and the audit trail (issue 33): a browser without a token is
/// sent to sign in and a wrong token is refused; a viewer sees a task
/// without its action buttons; an operator cancels it; the Audit page
/// names who did what, sign-ins and refusals included.
#[tokio::test]
async fn viewers_see_operators_act_and_the_audit_page_says_who() {
    const ALICE: &str = "alice-operator-token-0001";
    const BOB: &str = "bob-viewer-token-00000001";
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# test\noperator alice {ALICE}\nviewer bob {BOB}\n"),
    )
    .unwrap();
    let server = ApiServer::start(
        &nats.url(),
        &[
            "--allow-create-default",
            "--tokens",
            tokens.to_str().unwrap(),
        ],
    )
    .await;
    let http = http();
    let r = http
        .post(server.url("/v1/tasks"))
        .bearer_auth(ALICE)
        .json(&json!({"type": "render"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let driver = Driver::start().await;
    let b = &driver.browser;
    b.goto(&server.url("/ui/")).await.unwrap();
    wait_text(b, "h1", "Sign in").await;
    screenshot(b, "login.png").await;
    b.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("not-a-token-this-server-knows")
        .await
        .unwrap();
    click(b, Locator::Css("form[data-login] button")).await;
    wait_text(
        b,
        "[data-login-problem]",
        "That token is not one this server knows.",
    )
    .await;

    // a viewer sees everything and no action
    sign_in(b, &server, BOB, "bob · viewer").await;
    b.goto(&server.url(&format!("/ui/tasks/{id}")))
        .await
        .unwrap();
    wait_text(b, "h1 code", &id).await;
    assert!(b.find(Locator::Id("cancel")).await.is_err());
    assert!(b.find(Locator::Css(".badge.ro")).await.is_ok());
    click(b, Locator::Css("form.me button")).await;
    wait_text(b, "h1", "Sign in").await;

    // an operator acts, and the record names them
    sign_in(b, &server, ALICE, "alice · operator").await;
    b.goto(&server.url(&format!("/ui/tasks/{id}")))
        .await
        .unwrap();
    click_confirmed(b, "cancel", "Task cancelled: it will not run").await;
    assert_eq!(
        task_as(&http, &server, &id, ALICE).await["last_err"],
        "cancelled by the dashboard (alice)"
    );

    click(b, Locator::LinkText("Audit")).await;
    wait_text(b, "h1", "Audit trail").await;
    let rows = b.find_all(Locator::Css("tr[data-entry]")).await.unwrap();
    let mut seen = Vec::new();
    for row in rows {
        let who = row.find(Locator::Css("[data-who]")).await.unwrap();
        let action = row.find(Locator::Css("[data-action]")).await.unwrap();
        seen.push(format!(
            "{} {} {}",
            who.text().await.unwrap(),
            action.text().await.unwrap(),
            row.attr("data-status").await.unwrap().unwrap_or_default()
        ));
    }
    seen.reverse();
    assert_eq!(
        seen,
        [
            "alice POST /v1/tasks 201".to_string(),
            "anonymous POST /ui/login 401".into(),
            "bob POST /ui/login 303".into(),
            "bob POST /ui/logout 303".into(),
            "alice POST /ui/login 303".into(),
            format!("alice POST /ui/tasks/{id}/cancel 303"),
        ]
    );
    // a failed sign-in names no role
    let refused = text(b, Locator::Css("tr[data-status='401'] td:nth-child(3)")).await;
    assert_eq!(refused, "—");
    assert_eq!(script_errors(b).await, Vec::<String>::new());
    screenshot(b, "audit.png").await;
}

/// The task `id` read through the API as `token`.
async fn task_as(http: &reqwest::Client, server: &ApiServer, id: &str, token: &str) -> Value {
    http.get(server.url(&format!("/v1/tasks/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The completed and failed tasks of queue DEFAULT over its statistics
/// records, read through `server`'s API.
async fn history(http: &reqwest::Client, server: &ApiServer) -> (u64, u64, usize) {
    let v = get(http, server, "/v1/stats?queue=DEFAULT").await;
    let records = v["records"].as_array().unwrap();
    let sum = |state: &str| -> u64 {
        records
            .iter()
            .flat_map(|r| r["types"].as_object().unwrap().values())
            .map(|t| t[state].as_u64().unwrap_or(0))
            .sum()
    };
    (sum("completed"), sum("failed"), records.len())
}

/// Statistics kept by the cluster (issue 33): two dashboard replicas
/// chart the same tasks on their overviews, and a replica started after
/// one is stopped (a restart) charts them too.
#[tokio::test]
async fn two_dashboards_chart_the_same_history_and_a_restart_keeps_it() {
    let nats = NatsServer::start();
    let args = ["--allow-create-default", "--stats-interval", "2s"];
    let mut a = ApiServer::start(&nats.url(), &args).await;
    let b = ApiServer::start(&nats.url(), &args).await;
    let http = http();
    // both count from their first whole interval: wait for a record
    wait_for(T, "a first statistics record", || async {
        (history(&http, &a).await.2 > 0).then_some(())
    })
    .await;
    let runs = Runs::default();
    let (_client, worker) = start_worker(&nats, &runs).await;
    for _ in 0..3 {
        create(&http, &a, json!({"type": "ok"})).await;
    }
    create(&http, &a, json!({"type": "dead:a"})).await;
    wait_for(T, "the four tasks in the statistics", || async {
        let (c, f, _) = history(&http, &a).await;
        ((c, f) == (3, 1)).then_some(())
    })
    .await;

    let driver = Driver::start().await;
    let browser = &driver.browser;
    for server in [&a, &b] {
        wait_text_reloading(
            browser,
            &server.url("/ui/"),
            "tr[data-chart='DEFAULT'] td[data-completed]",
            "3",
        )
        .await;
        let failed = text(
            browser,
            Locator::Css("tr[data-chart='DEFAULT'] td[data-failed]"),
        )
        .await;
        assert_eq!(failed, "1");
        let bars = browser
            .find_all(Locator::Css("tr[data-chart='DEFAULT'] svg rect.ok"))
            .await
            .unwrap();
        assert!(!bars.is_empty());
    }
    screenshot(browser, "history.png").await;
    assert_eq!(script_errors(browser).await, Vec::<String>::new());

    a.child.kill().await.unwrap();
    let again = ApiServer::start(&nats.url(), &args).await;
    wait_text_reloading(
        browser,
        &again.url("/ui/"),
        "tr[data-chart='DEFAULT'] td[data-completed]",
        "3",
    )
    .await;
    worker.stop().await;
}

/// A task's history (issue 33): with `--keep-history` the server stores
/// every state change, Go's and ours, and the task page shows them in
/// order with each try's error (`asyncjobs-http/tests/stats.rs` checks
/// the page of a cluster that keeps none).
#[tokio::test]
async fn the_task_page_shows_its_history() {
    let nats = NatsServer::start();
    let server = ApiServer::start(
        &nats.url(),
        &["--allow-create-default", "--keep-history", "1h"],
    )
    .await;
    let http = http();
    // the stream is made at start, before any task
    wait_for(T, "the history stream", || async {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.ok()?);
        js.get_stream("CHORIA_AJ_HISTORY").await.ok().map(|_| ())
    })
    .await;
    let runs = Runs::default();
    let (_client, worker) = start_worker(&nats, &runs).await;
    let flaky = create(&http, &server, json!({"type": "flaky"})).await;
    wait_for(T, "the flaky task to end", || {
        let (http, server, flaky) = (&http, &server, &flaky);
        async move { (task(http, server, flaky).await["state"] == "terminated").then_some(()) }
    })
    .await;
    let r = http
        .post(server.url(&format!("/v1/tasks/{flaky}/retry")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    wait_for(T, "the retried task to complete", || {
        let (http, server, flaky) = (&http, &server, &flaky);
        async move { (task(http, server, flaky).await["state"] == "complete").then_some(()) }
    })
    .await;

    let driver = Driver::start().await;
    let b = &driver.browser;
    let page = server.url(&format!("/ui/tasks/{flaky}"));
    wait_text_reloading(
        b,
        &page,
        "tr[data-change]:last-child td:nth-child(2)",
        "complete",
    )
    .await;
    let mut changes = vec![];
    for row in b.find_all(Locator::Css("tr[data-change]")).await.unwrap() {
        changes.push(row.attr("data-change").await.unwrap().unwrap_or_default());
    }
    assert_eq!(
        changes.first().map(String::as_str),
        Some("new"),
        "{changes:?}"
    );
    let ended = changes
        .iter()
        .position(|s| s == "terminated")
        .expect("terminated");
    assert!(
        changes[..ended].contains(&"active".to_string()),
        "{changes:?}"
    );
    assert!(
        changes[ended..].contains(&"active".to_string()),
        "{changes:?}"
    );
    let error = text(b, Locator::Css("tr[data-change='terminated'] td.err")).await;
    assert_eq!(error, "first run fails for good");
    b.execute(
        "document.querySelector('table[data-history]').scrollIntoView();",
        vec![],
    )
    .await
    .unwrap();
    screenshot(b, "task-history.png").await;
    assert_eq!(script_errors(b).await, Vec::<String>::new());

    // a replica started without --keep-history shows the history the
    // cluster keeps
    let plain = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let html = http
        .get(plain.url(&format!("/ui/tasks/{flaky}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-change=\"complete\""), "{html}");
    worker.stop().await;
}

/// Bulk actions on a selection (issue 33): ticking two of three tasks in
/// the list and "Cancel selected…" confirms on a page that says how many
/// it takes, cancels exactly those, and the third keeps waiting.
#[tokio::test]
async fn selected_tasks_are_cancelled_from_the_list() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let client = asyncjobs::Client::builder()
        .url(nats.url())
        .queue(asyncjobs::Queue::new("PICK"))
        .build()
        .await
        .unwrap();
    let mut ids = vec![];
    for i in 0..3 {
        let mut t = Task::new("pick", &i).unwrap();
        client.enqueue(&mut t).await.unwrap();
        ids.push(t.id);
    }
    let driver = Driver::start().await;
    let b = &driver.browser;
    b.goto(&server.url("/ui/tasks?queue=PICK")).await.unwrap();
    streams_open(b).await;
    for id in &ids[..2] {
        tick(b, id).await;
    }
    click(b, Locator::Id("selected-cancel")).await;
    wait_text(b, "h1", "Cancel selected tasks").await;
    let said = text(b, Locator::Css("main p")).await;
    assert!(
        said.starts_with("2 selected; the action takes 2 of them."),
        "{said}"
    );
    click(b, Locator::Id("confirm")).await;
    wait_text(b, ".notice", "2 tasks cancelled").await;
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
    assert_eq!(script_errors(b).await, Vec::<String>::new());
}

/// Ticks task `id`'s box in the list until it shows ticked: the list's
/// rows are read afresh once its event stream is open, so a box found
/// before that may be gone when clicked (the page keeps ticks across the
/// re-read).
async fn tick(b: &Browser, id: &str) {
    let css = format!("input[name=id][value='{id}']");
    let ticked = format!("{css}:checked");
    let done = tokio::time::timeout(T, async {
        loop {
            if b.find(Locator::Css(&ticked)).await.is_ok() {
                return;
            }
            if let Ok(e) = b.find(Locator::Css(&css)).await {
                let _ = e.click().await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "the box of {id} did not stay ticked");
}
