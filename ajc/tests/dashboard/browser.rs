//! The Chromium session the dashboard tests drive, the pages' worker and
//! the helpers the tests share; the names every test uses are re-exported.

pub(crate) use crate::support::{http, ApiServer, T};
pub(crate) use asyncjobs::{Router, Task, TaskContext, TaskState};
pub(crate) use asyncjobs_tests::{wait_for, NatsServer};
pub(crate) use fantoccini::{Client as Browser, Locator};
pub(crate) use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// A chromedriver process and a headless Chromium session through it.
pub(crate) struct Driver {
    _process: tokio::process::Child,
    pub(crate) browser: Browser,
}

pub(crate) fn find_binary(names: &[&str]) -> Option<PathBuf> {
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
    pub(crate) async fn start() -> Driver {
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
pub(crate) async fn script_errors(b: &Browser) -> Vec<String> {
    let v = b
        .execute("return window.__errors || ['app.js did not run'];", vec![])
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Waits until every event stream of the page is open.
pub(crate) async fn streams_open(b: &Browser) {
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
pub(crate) async fn wait_text(b: &Browser, css: &str, want: &str) {
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
pub(crate) async fn click(b: &Browser, at: Locator<'_>) {
    b.find(at).await.unwrap().click().await.unwrap();
}

/// The text of the element `at` (it must be there).
pub(crate) async fn text(b: &Browser, at: Locator<'_>) -> String {
    b.find(at).await.unwrap().text().await.unwrap()
}

/// Clicks the button `id`, accepts the page's confirmation and waits for
/// its notice to read `notice`.
pub(crate) async fn click_confirmed(b: &Browser, id: &str, notice: &str) {
    click(b, Locator::Id(id)).await;
    b.accept_alert().await.unwrap();
    wait_text(b, ".notice", notice).await;
}

pub(crate) async fn create(http: &reqwest::Client, server: &ApiServer, body: Value) -> String {
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

pub(crate) async fn task(http: &reqwest::Client, server: &ApiServer, id: &str) -> Value {
    http.get(server.url(&format!("/v1/tasks/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) async fn screenshot(b: &Browser, name: &str) {
    if std::env::var_os("UPDATE_SCREENSHOTS").is_none() {
        return;
    }
    let png = b.screenshot().await.unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// How many times each task ran, by id (for the handlers that count).
pub(crate) type Runs = Arc<Mutex<HashMap<String, u32>>>;

/// Counts a run of task `id`; returns how many it has had.
pub(crate) fn count_run(runs: &Runs, id: &str) -> u32 {
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
pub(crate) async fn start_worker(
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

/// The text of the first element matching `css` on the page at `url`,
/// loaded again until it is `want` (for pages without live updates). The
/// whole wait is bounded, WebDriver calls included.
pub(crate) async fn wait_text_reloading(b: &Browser, url: &str, css: &str, want: &str) {
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

pub(crate) async fn get(http: &reqwest::Client, server: &ApiServer, path: &str) -> Value {
    http.get(server.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Signs the browser in with `token` on the sign-in page and waits for
/// the header to name `me`.
pub(crate) async fn sign_in(b: &Browser, server: &ApiServer, token: &str, me: &str) {
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

/// The task `id` read through the API as `token`.
pub(crate) async fn task_as(
    http: &reqwest::Client,
    server: &ApiServer,
    id: &str,
    token: &str,
) -> Value {
    http.get(server.url(&format!("/v1/tasks/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Ticks task `id`'s box in the list until it shows ticked: the list's
/// rows are read afresh once its event stream is open, so a box found
/// before that may be gone when clicked (the page keeps ticks across the
/// re-read).
pub(crate) async fn tick(b: &Browser, id: &str) {
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
