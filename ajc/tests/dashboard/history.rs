//! Statistics kept by the cluster and a task's history (issue 33).

use crate::browser::*;

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
/// one is stopped (a restart) charts them too; the queue's page charts
/// them with a row per task type, a task type's page only its own.
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

    // the queue's page, from the overview's chart, and a task type's page
    click(browser, Locator::Css("tr[data-chart='DEFAULT'] td a")).await;
    wait_text(
        browser,
        "figure[data-chart='DEFAULT'] [data-completed]",
        "3",
    )
    .await;
    assert_eq!(
        text(
            browser,
            Locator::Css("figure[data-chart='DEFAULT'] [data-failed]")
        )
        .await,
        "1"
    );
    let row = |t: &str| format!("tr[data-row='{t}'] td[data-completed]");
    assert_eq!(text(browser, Locator::Css(&row("ok"))).await, "3");
    assert_eq!(text(browser, Locator::Css(&row("dead:a"))).await, "0");
    let bars = browser
        .find_all(Locator::Css("figure[data-chart='DEFAULT'] svg rect.ok"))
        .await
        .unwrap();
    assert!(!bars.is_empty());
    screenshot(browser, "queue-page.png").await;
    click(browser, Locator::Css("tr[data-row='dead:a'] td a")).await;
    wait_text(browser, "figure[data-chart='dead:a'] [data-failed]", "1").await;
    assert_eq!(
        text(
            browser,
            Locator::Css("figure[data-chart='dead:a'] [data-completed]")
        )
        .await,
        "0"
    );
    assert_eq!(
        text(
            browser,
            Locator::Css("tr[data-row='DEFAULT'] td[data-completed]")
        )
        .await,
        "0"
    );
    click(browser, Locator::Css("a[data-tasks-link]")).await;
    wait_text(browser, "tbody tr td:nth-child(3)", "dead:a").await;
    assert_eq!(script_errors(browser).await, Vec::<String>::new());
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
    // each change a try made names the worker; the others name none
    let here = format!(
        "{}:{}",
        asyncjobs::worker::presence::hostname(),
        std::process::id()
    );
    for row in b.find_all(Locator::Css("tr[data-change]")).await.unwrap() {
        let state = row.attr("data-change").await.unwrap().unwrap_or_default();
        let by = row
            .find(Locator::Css("td[data-worker]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // the enqueue and the operator's retry were made over HTTP
        let want = match state.as_str() {
            "new" | "retry" => "",
            _ => here.as_str(),
        };
        assert_eq!(by, want, "the {state} change");
    }
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
