//! Flow control on the pages (issue 32).

use crate::browser::*;

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
