//! Roles and the audit trail (issue 33).

use crate::browser::*;

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
