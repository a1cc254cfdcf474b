//! Roles for mutual TLS identities (docs/interfaces.md §2.8): the router
//! served the way `ajc server run` does ([`asyncjobs_http::server::serve`])
//! with TLS and a client CA, against a real nats-server, through a real
//! HTTP client presenting certificates from that CA. A `cert` credential
//! line gives a certificate's subject common name its role; an unlisted
//! one is refused; a token still decides over the same connection.

use asyncjobs::{Client, Queue};
use asyncjobs_http::server::{rustls_config, serve, TlsFiles};
use asyncjobs_http::{parse_credentials, router, ApiOptions, Auth};
use asyncjobs_tests::NatsServer;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(20);
const ALICE: &str = "alice-operator-token-0001";

/// A CA, a server certificate for 127.0.0.1 and one client certificate
/// for each common name, written under `dir`: the server's files and a
/// client identity for each name.
struct Pki {
    ca: reqwest::Certificate,
    files: TlsFiles,
    identities: Vec<reqwest::Identity>,
}

fn pki(dir: &Path, common_names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&server_key, &ca_cert, &ca_key)
        .unwrap();
    let identities = common_names
        .iter()
        .map(|cn| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["client".into()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, *cn);
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            let pem = format!("{}{}", cert.pem(), key.serialize_pem());
            reqwest::Identity::from_pem(pem.as_bytes()).unwrap()
        })
        .collect();
    let write = |name: &str, text: String| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).unwrap(),
        files: TlsFiles {
            cert: Some(write("server.pem", server.pem())),
            key: Some(write("server.key", server_key.serialize_pem())),
            client_ca: Some(write("ca.pem", ca_cert.pem())),
        },
        identities,
    }
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("certificates-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Serves the router with mutual TLS on a free loopback port until `stop`;
/// its base URL.
async fn serve_mtls(
    nats: &NatsServer,
    files: &TlsFiles,
    options: ApiOptions,
    stop: CancellationToken,
) -> String {
    let client = Client::builder()
        .url(nats.url())
        .queue(Queue::new("CERTIFIED"))
        .build()
        .await
        .unwrap();
    let config = rustls_config(files).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(client, options);
    tokio::spawn(serve(
        listener,
        app,
        Some(config),
        Duration::from_secs(1),
        stop,
    ));
    format!("https://127.0.0.1:{}", addr.port())
}

/// A client trusting the CA and presenting `identity`.
fn http(ca: &reqwest::Certificate, identity: &reqwest::Identity) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .identity(identity.clone())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(T)
        .build()
        .unwrap()
}

/// The status and JSON body of `req`.
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until `base` answers its health probe through `http`.
async fn until_served(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + T;
    loop {
        match http.get(format!("{base}/healthz")).send().await {
            Ok(r) if r.status() == 200 => return,
            other => assert!(
                Instant::now() < deadline,
                "the server never answered: {other:?}"
            ),
        }
        tokio::task::yield_now().await;
    }
}

/// `(who, role, method, path, status)` of the trail's newest `n` entries,
/// read by `http`, oldest first.
async fn trail(http: &reqwest::Client, base: &str, n: usize) -> Vec<(String, String, String, u64)> {
    let (status, body) = send(http.get(format!("{base}/v1/audit?limit={n}"))).await;
    assert_eq!(status, 200, "{body}");
    let mut out: Vec<_> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                format!(
                    "{} {}",
                    e["who"].as_str().unwrap(),
                    e["role"].as_str().unwrap_or("-")
                ),
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
async fn certificates_have_roles_and_the_trail_names_them() {
    let nats = NatsServer::start();
    let dir = scratch("roles");
    let pki = pki(&dir, &["Ops Runner 1", "viewer.example", "Nobody"]);
    let [ops, viewer, stranger] = [0, 1, 2].map(|i| http(&pki.ca, &pki.identities[i]));
    let stop = CancellationToken::new();
    let options = ApiOptions {
        auth: Auth::MutualTls,
        credentials: parse_credentials(&format!(
            "operator ops cert Ops Runner 1\nviewer web cert viewer.example\noperator alice {ALICE}\n"
        ))
        .unwrap(),
        ..ApiOptions::default()
    };
    let base = serve_mtls(&nats, &pki.files, options, stop.clone()).await;
    until_served(&ops, &base).await;
    let task = json!({"type": "email:new"});

    // an operator's certificate acts, and is named where the record says who
    let (status, created) = send(ops.post(format!("{base}/v1/tasks")).json(&task)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, cancelled) = send(ops.post(format!("{base}/v1/tasks/{id}/cancel"))).await;
    assert_eq!(status, 200, "{cancelled}");
    assert!(
        cancelled["last_err"]
            .as_str()
            .unwrap()
            .ends_with("by the HTTP API (ops)"),
        "{cancelled}"
    );
    // the dashboard knows who it is without signing in
    let r = ops.get(format!("{base}/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("ops · operator"));

    // a viewer's certificate reads and may not act
    assert_eq!(send(viewer.get(format!("{base}/v1/tasks"))).await.0, 200);
    let (status, body) = send(viewer.post(format!("{base}/v1/tasks")).json(&task)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["details"]["reason"], "forbidden_role");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("web is a viewer"));

    // a certificate no line lists is refused, saying which one
    let r = stranger
        .get(format!("{base}/v1/tasks"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"Nobody\""),
        "{body}"
    );
    let (status, _) = send(stranger.post(format!("{base}/v1/tasks")).json(&task)).await;
    assert_eq!(status, 401);
    // a browser with it is sent to sign in; the probes need nothing
    let r = stranger.get(format!("{base}/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(send(stranger.get(format!("{base}/healthz"))).await.0, 200);

    // a token decides over the same mutual TLS connection
    let (status, body) = send(
        stranger
            .post(format!("{base}/v1/tasks"))
            .bearer_auth(ALICE)
            .json(&task),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        viewer
            .post(format!("{base}/v1/tasks"))
            .bearer_auth(ALICE)
            .json(&task),
    )
    .await;
    assert_eq!(status, 201, "a token over a viewer's certificate: {body}");
    let (status, _) = send(
        ops.post(format!("{base}/v1/tasks"))
            .bearer_auth("not-a-known-token-at-all")
            .json(&task),
    )
    .await;
    assert_eq!(
        status, 401,
        "an unknown token is not made good by a certificate"
    );

    assert_eq!(
        trail(&viewer, &base, 7).await,
        vec![
            entry("ops operator", "POST", "/v1/tasks", 201),
            entry(
                "ops operator",
                "POST",
                &format!("/v1/tasks/{id}/cancel"),
                200
            ),
            entry("web viewer", "POST", "/v1/tasks", 403),
            entry("cert:Nobody -", "POST", "/v1/tasks", 401),
            entry("alice operator", "POST", "/v1/tasks", 201),
            entry("alice operator", "POST", "/v1/tasks", 201),
            entry("anonymous -", "POST", "/v1/tasks", 401),
        ]
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(dir);
}

/// Without credentials, mutual TLS alone lets every client with a
/// certificate from the CA act, as `anonymous`, whatever its name.
#[tokio::test]
async fn without_credentials_every_certificate_may_act() {
    let nats = NatsServer::start();
    let dir = scratch("open");
    let pki = pki(&dir, &["Anyone"]);
    let anyone = http(&pki.ca, &pki.identities[0]);
    let stop = CancellationToken::new();
    let options = ApiOptions {
        auth: Auth::MutualTls,
        ..ApiOptions::default()
    };
    let base = serve_mtls(&nats, &pki.files, options, stop.clone()).await;
    until_served(&anyone, &base).await;
    let (status, body) = send(
        anyone
            .post(format!("{base}/v1/tasks"))
            .json(&json!({"type": "x"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        trail(&anyone, &base, 5).await,
        vec![entry("anonymous operator", "POST", "/v1/tasks", 201)]
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(dir);
}
