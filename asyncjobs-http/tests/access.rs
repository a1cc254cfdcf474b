//! Roles and the audit trail (docs/interfaces.md §2.8), through a real
//! HTTP client against a real nats-server: who may read and act by token,
//! every action and refusal in the trail with who made it, and one trail
//! for every replica that outlives them.

mod support;

use asyncjobs::{Client, Queue};
use asyncjobs_http::{parse_credentials, router, ApiOptions};
use asyncjobs_tests::NatsServer;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const ALICE: &str = "alice-operator-token-0001";
const BOB: &str = "bob-viewer-token-00000001";

fn options() -> ApiOptions {
    ApiOptions {
        credentials: parse_credentials(&format!("operator alice {ALICE}\nviewer bob {BOB}\n"))
            .unwrap(),
        ..ApiOptions::default()
    }
}

/// The router on a free loopback port; its base URL.
async fn serve(client: Client, options: ApiOptions) -> String {
    let app = router(client, options);
    support::listen(app).await
}

async fn client_for(server: &NatsServer) -> Client {
    Client::builder()
        .url(server.url())
        .queue(Queue::new("AUDITED"))
        .build()
        .await
        .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(T)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The status and JSON body of `req`.
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `(who, method, path, status)` of the trail's newest `n` entries, read
/// through `base` as `token`, oldest first.
async fn trail(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    n: usize,
) -> Vec<(String, String, String, u64)> {
    let (status, body) = send(
        http.get(format!("{base}/v1/audit?limit={n}"))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut out: Vec<_> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["who"].as_str().unwrap().to_string(),
                e["method"].as_str().unwrap().to_string(),
                e["path"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    out.reverse();
    out
}

fn entry(who: &str, method: &str, path: &str, status: u64) -> (String, String, String, u64) {
    (who.into(), method.into(), path.into(), status)
}

#[tokio::test]
async fn tokens_decide_who_may_read_and_act_and_the_trail_says_who_did() {
    let nats = NatsServer::start();
    let base = serve(client_for(&nats).await, options()).await;
    let http = http();
    let task = json!({"type": "email:new"});

    // probes and the sign-in page need no token; everything else does
    assert_eq!(send(http.get(format!("{base}/healthz"))).await.0, 200);
    assert_eq!(
        http.get(format!("{base}/ui/login"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = http.get(format!("{base}/v1/tasks")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, _) = send(
        http.get(format!("{base}/v1/tasks"))
            .bearer_auth("not-a-known-token-at-all"),
    )
    .await;
    assert_eq!(status, 401);
    // a browser without a token is sent to sign in
    let r = http.get(format!("{base}/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");

    // a viewer reads, and may not act
    assert_eq!(
        send(http.get(format!("{base}/v1/tasks")).bearer_auth(BOB))
            .await
            .0,
        200
    );
    let (status, body) = send(
        http.post(format!("{base}/v1/tasks"))
            .bearer_auth(BOB)
            .json(&task),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "permission_denied");
    assert_eq!(body["error"]["details"]["reason"], "forbidden_role");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("bob is a viewer"));
    // nor act through the dashboard
    let r = http
        .post(format!("{base}/ui/queues/AUDITED/pause"))
        .bearer_auth(BOB)
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // an operator acts
    let (status, created) = send(
        http.post(format!("{base}/v1/tasks"))
            .bearer_auth(ALICE)
            .json(&task),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    // what an operator does names them where the record says who
    let (status, cancelled) = send(
        http.post(format!("{base}/v1/tasks/{id}/cancel"))
            .bearer_auth(ALICE),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert!(
        cancelled["last_err"]
            .as_str()
            .unwrap()
            .ends_with("by the HTTP API (alice)"),
        "{cancelled}"
    );
    let (status, _) = send(
        http.delete(format!("{base}/v1/tasks/{id}"))
            .bearer_auth(ALICE),
    )
    .await;
    assert_eq!(status, 204);
    // a token-less action is refused and recorded too
    assert_eq!(
        send(http.post(format!("{base}/v1/tasks")).json(&task))
            .await
            .0,
        401
    );

    // reading is not in the trail; every action and refusal is, with who
    assert_eq!(
        trail(&http, &base, BOB, 6).await,
        vec![
            entry("bob", "POST", "/v1/tasks", 403),
            entry("bob", "POST", "/ui/queues/AUDITED/pause", 403),
            entry("alice", "POST", "/v1/tasks", 201),
            entry("alice", "POST", &format!("/v1/tasks/{id}/cancel"), 200),
            entry("alice", "DELETE", &format!("/v1/tasks/{id}"), 204),
            entry("anonymous", "POST", "/v1/tasks", 401),
        ]
    );
    let (_, body) = send(
        http.get(format!("{base}/v1/audit?limit=1"))
            .bearer_auth(BOB),
    )
    .await;
    let newest = &body["entries"][0];
    assert!(
        newest.get("role").is_none(),
        "no role without a known token: {newest}"
    );
    assert!(!newest["replica"].as_str().unwrap().is_empty());
    let (_, body) = send(
        http.get(format!("{base}/v1/audit?limit=2"))
            .bearer_auth(BOB),
    )
    .await;
    assert_eq!(body["entries"][1]["role"], "operator");
    // bad limits are refused clearly
    for bad in ["0", "1001", "x"] {
        let (status, body) = send(
            http.get(format!("{base}/v1/audit?limit={bad}"))
                .bearer_auth(BOB),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["details"]["field"], "limit");
    }
}

/// Two replicas write one trail, and a replica started after both are
/// gone reads all of it: the trail is the cluster's, not a process's.
#[tokio::test]
async fn every_replica_reads_one_trail_that_outlives_them() {
    let nats = NatsServer::start();
    let a = serve(client_for(&nats).await, options()).await;
    let b = serve(client_for(&nats).await, options()).await;
    let http = http();
    for base in [&a, &b] {
        let (status, _) = send(
            http.post(format!("{base}/v1/queues/AUDITED/pause"))
                .bearer_auth(ALICE)
                .json(&json!({})),
        )
        .await;
        assert!(status < 300, "pause through {base}: {status}");
    }
    let want = vec![
        entry("alice", "POST", "/v1/queues/AUDITED/pause", 200),
        entry("alice", "POST", "/v1/queues/AUDITED/pause", 200),
    ];
    let seen_a = trail(&http, &a, BOB, 10).await;
    assert_eq!(seen_a, want);
    assert_eq!(trail(&http, &b, BOB, 10).await, seen_a);
    // a fresh replica (a restart) reads the same trail
    let c = serve(client_for(&nats).await, options()).await;
    assert_eq!(trail(&http, &c, BOB, 10).await, seen_a);
    // the stream holds it, created once with the API's settings
    let js = client_for(&nats).await.jetstream();
    let mut stream = js.get_stream("CHORIA_AJ_AUDIT").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 2);
    assert_eq!(info.config.max_age, Duration::from_secs(90 * 24 * 3600));
}

/// Read-only without tokens: everyone is a viewer, on the API too.
#[tokio::test]
async fn read_only_refuses_the_apis_actions_too() {
    let nats = NatsServer::start();
    let base = serve(
        client_for(&nats).await,
        ApiOptions {
            read_only: true,
            ..ApiOptions::default()
        },
    )
    .await;
    let http = http();
    let (status, body) = send(
        http.post(format!("{base}/v1/tasks"))
            .json(&json!({"type": "x"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("read-only"));
    assert_eq!(send(http.get(format!("{base}/v1/tasks"))).await.0, 200);
    assert_eq!(
        trail(&http, &base, "", 5).await,
        vec![entry("anonymous", "POST", "/v1/tasks", 403)]
    );
}
