//! Bulk actions by filter and by selection, and their progress page
//! (issue 33).

use crate::browser::*;

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

/// Dependants (issue 33): a task's page lists the tasks that depend on
/// it, as links with their state, and no other task; its dependants'
/// list carries the filter through "Cancel every matching task…" and its
/// confirmation, so exactly they are cancelled (not the task itself, not
/// an unrelated one).
#[tokio::test]
async fn a_task_page_links_its_dependants_and_they_are_cancelled_together() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    // no worker: every task waits
    let client = asyncjobs::Client::builder()
        .url(nats.url())
        .queue(asyncjobs::Queue::new("DEPS"))
        .build()
        .await
        .unwrap();
    let mut first = Task::new("deps:first", &()).unwrap();
    client.enqueue(&mut first).await.unwrap();
    let mut other = Task::new("deps:other", &()).unwrap();
    client.enqueue(&mut other).await.unwrap();
    let mut dependants = vec![];
    for i in 0..2 {
        let mut t = Task::new("deps:then", &i).unwrap();
        t.dependencies = vec![first.id.clone()];
        client.enqueue(&mut t).await.unwrap();
        dependants.push(t.id);
    }
    let mut elsewhere = Task::new("deps:then", &9).unwrap();
    elsewhere.dependencies = vec![other.id.clone()];
    client.enqueue(&mut elsewhere).await.unwrap();

    let driver = Driver::start().await;
    let b = &driver.browser;
    b.goto(&server.url(&format!("/ui/tasks/{}", first.id)))
        .await
        .unwrap();
    let links = b
        .find_all(Locator::Css("[data-dependants] li a"))
        .await
        .unwrap();
    let mut shown = vec![];
    for l in links {
        shown.push(l.text().await.unwrap());
    }
    shown.sort();
    let mut want = dependants.clone();
    want.sort();
    assert_eq!(shown, want);
    assert!(b
        .find(Locator::Css("[data-more-dependants]"))
        .await
        .is_err());
    // a dependant's page links back to the task it waits for
    click(
        b,
        Locator::XPath(&format!("//a[code[text()='{}']]", dependants[0])),
    )
    .await;
    wait_text(b, "h1 code", &dependants[0]).await;
    assert!(b
        .find(Locator::XPath(&format!(
            "//dd//a[code[text()='{}']]",
            first.id
        )))
        .await
        .is_ok());

    b.goto(&server.url(&format!("/ui/tasks?depends_on={}", first.id)))
        .await
        .unwrap();
    assert_eq!(
        b.find_all(Locator::Css("tbody tr[data-id]"))
            .await
            .unwrap()
            .len(),
        2
    );
    click(b, Locator::Id("bulk-cancel")).await;
    wait_text(b, "h1", "Cancel matching tasks").await;
    let said = text(b, Locator::Css("main p")).await;
    assert!(said.starts_with("2 tasks match."), "{said}");
    click(b, Locator::Id("confirm")).await;
    for id in &dependants {
        wait_for(T, "the dependant cancelled", || async {
            let t = client.load_task(id).await.ok()?;
            (t.state == TaskState::Terminated).then_some(())
        })
        .await;
    }
    for untouched in [&first.id, &other.id, &elsewhere.id] {
        let t = client.load_task(untouched).await.unwrap();
        assert!(
            matches!(t.state, TaskState::New | TaskState::Blocked),
            "{untouched} {:?}",
            t.state
        );
    }
    assert_eq!(script_errors(b).await, Vec::<String>::new());
}

/// A large bulk action's progress (issue 33): deleting 2,000 matching
/// tasks, the confirmation leads to the progress page at once, which shows
/// a `<progress>` bar and tasks done of the total while it runs (reloading
/// itself, no script needed) and ends on the summary.
#[tokio::test]
async fn a_large_bulk_action_shows_its_progress_to_the_end() {
    let nats = NatsServer::start();
    let server = ApiServer::start(&nats.url(), &["--allow-create-default"]).await;
    let client = asyncjobs::Client::builder()
        .url(nats.url())
        .queue(asyncjobs::Queue::new("MANY"))
        .build()
        .await
        .unwrap();
    let mut tasks: Vec<Task> = (0..2000)
        .map(|i| Task::new("bulk:many", &i).unwrap())
        .collect();
    assert!(client
        .enqueue_many(&mut tasks)
        .await
        .iter()
        .all(Result::is_ok));

    let driver = Driver::start().await;
    let b = &driver.browser;
    b.goto(&server.url("/ui/tasks?queue=MANY&type=bulk:many"))
        .await
        .unwrap();
    click(b, Locator::Id("bulk-delete")).await;
    wait_text(b, "h1", "Delete matching tasks").await;
    let said = text(b, Locator::Css("main p")).await;
    assert!(said.starts_with("2000 tasks match."), "{said}");
    click(b, Locator::Id("confirm")).await;
    // the progress page, running (its count part way) or already done
    let mut count = String::new();
    let polled = tokio::time::timeout(T, async {
        loop {
            if let Ok(e) = b.find(Locator::Css("#bulk-count")).await {
                count = e.text().await.unwrap_or_default();
                if count.ends_with(" of 2000 tasks done") {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "the progress page's count: {count:?}");
    assert!(b
        .current_url()
        .await
        .unwrap()
        .path()
        .starts_with("/ui/bulk/"));
    assert!(b.find(Locator::Css("progress")).await.is_ok());
    screenshot(b, "bulk-progress.png").await;
    wait_text(b, ".notice", "2000 tasks deleted").await;
    assert_eq!(
        text(b, Locator::Css("#bulk-count")).await,
        "2000 of 2000 tasks done"
    );
    for t in tasks.iter().step_by(250) {
        assert!(matches!(
            client.load_task(&t.id).await,
            Err(asyncjobs::Error::TaskNotFound(_))
        ));
    }
    assert_eq!(script_errors(b).await, Vec::<String>::new());
}
