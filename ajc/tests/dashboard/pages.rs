//! The pages themselves: the overview, task list and task page
//! updating live, actions without script, an unserved queue, the workers
//! and schedules pages.

use crate::browser::*;

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
