//! The asyncjobs HTTP API: the routes, JSON and errors of the Go system's
//! `ajc server run` (docs/interfaces.md §2), as an [`axum::Router`] to mount in your
//! own application or to serve with [`server::serve`] (which `ajc server
//! run` does).
//!
//! A client written against Go's API works unchanged: same paths, methods,
//! status codes, headers, JSON keys and error envelope
//! (`{"error":{"code","details":{"field","reason"},"message"}}`). Beyond Go:
//! idempotency keys shared by every replica (a KV bucket), a long-poll for a
//! task's end (`GET /v1/tasks/{id}/wait`), a Server-Sent Events stream of
//! lifecycle events (`GET /v1/events`), Prometheus metrics of the API
//! (`GET /metrics`), an access log through `tracing`, and the request's
//! `traceparent` carried onto the tasks it creates. The deliberate
//! differences from Go are listed in the crate's README section and on
//! [`ApiOptions`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
//! let api = asyncjobs_http::router(client, asyncjobs_http::ApiOptions::default());
//! // mount it beside your own routes
//! let app = axum::Router::new().merge(api);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod access;
mod error;
pub mod go_json;
pub mod history;
mod idempotency;
mod observe;
mod routes;
pub mod schema;
pub mod server;
pub mod stats;
mod streams;
mod ui;

/// This API replica's name in what it writes for the cluster (audit
/// entries, statistics, counts, bulk progress): its host name, as
/// workers announce theirs, or `unknown`.
pub(crate) fn replica() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        Some(asyncjobs::worker::presence::hostname())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".into())
    })
}

pub use access::audit::AuditEntry;
pub use access::{
    parse_credentials, Credential, PeerCertificate, Role, MAX_COMMON_NAME_LEN, MIN_TOKEN_LEN,
};
pub use error::{ApiError, ErrorCode};
pub use routes::openapi;

use asyncjobs::Client;
use std::sync::Arc;
use std::time::Duration;

/// How clients authenticate, as `GET /v1/info` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Auth {
    /// No authentication (`"none"`).
    #[default]
    None,
    /// Clients present certificates verified against a CA (`"mtls"`).
    MutualTls,
    /// Clients present bearer tokens ([`ApiOptions::credentials`],
    /// `"token"`; ours).
    Token,
}

impl Auth {
    fn as_str(self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::MutualTls => "mtls",
            Auth::Token => "token",
        }
    }
}

/// Settings of the API (docs/interfaces.md §2.1; Go's defaults).
///
/// Differences from Go on purpose: a body over `max_body` is answered 413
/// `payload_too_large` (Go: 400 `invalid_json`, docs/go-differences.md §46); `POST /v1/tasks`
/// refuses a `queue` other than the server's and any `signature` (Go ignores
/// the first and stores the second, which can never verify); `GET
/// /v1/tasks` applies `limit` after the filters (Go before); idempotency
/// keys live in a KV bucket shared by every replica (Go: per process);
/// deleting a missing schedule is a 404 as the OpenAPI document says (Go:
/// 204); `GET /v1/info` reports this crate's version (Go: `dev`).
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Allow `POST /v1/queues` to create `DEFAULT` (Go's
    /// `--allow-create-default`). Default false.
    pub allow_create_default: bool,
    /// Largest request body in bytes (Go's `--max-body`, 524288).
    pub max_body: usize,
    /// What `GET /v1/info` reports as `auth`.
    pub auth: Auth,
    /// How long an idempotency key is remembered (Go: 10 minutes).
    pub idempotency_ttl: Duration,
    /// How long reading a request body may take (Go's `--read-timeout`, 30 s).
    pub read_timeout: Duration,
    /// How long a request may take to be answered, streams and long-polls
    /// excepted (Go's `--write-timeout`, 30 s).
    pub write_timeout: Duration,
    /// Replicas of the idempotency bucket and of `CHORIA_AJ_HTTP` (the
    /// dashboard's shared form token) when they are created (default 1).
    pub replicas: usize,
    /// Serve the web dashboard under `/ui/` (default true).
    pub ui: bool,
    /// Refuse every action (the API's and the dashboard's: any method but
    /// `GET`, `HEAD`, `OPTIONS`) with 403, whoever asks; pages still show
    /// everything. Default false.
    pub read_only: bool,
    /// Who may use the API and dashboard, by bearer token, each as a
    /// viewer or an operator (docs/interfaces.md §2.8). Empty (the
    /// default): everyone may, as `anonymous`.
    pub credentials: Vec<Credential>,
    /// How long the audit trail's entries are kept when this API creates
    /// its stream (`CHORIA_AJ_AUDIT`; an existing one keeps its own
    /// setting). Default 90 days.
    pub audit_max_age: Duration,
    /// The length of one statistics interval ([`stats`]): this replica
    /// sums the task events of each and writes one record per queue
    /// shortly after it ends. Whole seconds; zero writes none (reading
    /// goes on). Default 60 s.
    pub stats_interval: Duration,
    /// Keep every task state event this long in the stream
    /// `CHORIA_AJ_HISTORY` (created when missing; [`history`]), so task
    /// pages show each task's timeline. Default `None`: no history (the
    /// server stores nothing more per task).
    pub keep_history: Option<Duration>,
    /// Answer only requests whose `Host` is a loopback name or address
    /// (`localhost`, `127.0.0.1`, `[::1]`, with any port): a web page on
    /// another site cannot reach a loopback-bound server by DNS rebinding.
    /// `ajc server run` sets it when it listens on a loopback address.
    /// Default false (the router may be mounted behind any host name).
    pub loopback_hosts_only: bool,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            allow_create_default: false,
            max_body: 524_288,
            auth: Auth::None,
            idempotency_ttl: Duration::from_secs(600),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            replicas: 1,
            ui: true,
            read_only: false,
            credentials: Vec::new(),
            audit_max_age: Duration::from_secs(90 * 24 * 3600),
            stats_interval: Duration::from_secs(60),
            keep_history: None,
            loopback_hosts_only: false,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Api(Arc<Inner>);

pub(crate) struct Inner {
    pub client: Client,
    pub options: ApiOptions,
    pub idempotency: idempotency::Keys,
    /// One task listing at a time (Go's `list_in_progress`): a listing
    /// reads the whole store.
    pub listing: Arc<tokio::sync::Semaphore>,
    /// The token the dashboard's forms carry: shared by every replica
    /// through the KV bucket `CHORIA_AJ_HTTP` (random per process when the
    /// bucket cannot be used).
    pub csrf: tokio::sync::OnceCell<String>,
    /// Queues and task types [`asyncjobs::Client::serving`] found served,
    /// with when: the enqueue route does not read the cluster again for
    /// them within [`SERVED_TTL`].
    pub served: std::sync::Mutex<ServedCache>,
    /// Who did what ([`access::audit`]).
    pub audit: access::audit::Trail,
    /// Whether this replica is counting the tasks by state
    /// ([`stats::counts`]).
    pub counting: std::sync::atomic::AtomicBool,
}

/// How long the enqueue route trusts what it read of who serves a queue
/// and a task type.
pub(crate) const SERVED_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Warnings (none: served) by queue and task type, with when read.
pub(crate) type ServedCache =
    std::collections::HashMap<(String, String), (std::time::Instant, Option<String>)>;

impl Api {
    /// Whether the request being answered may not act: a read-only API,
    /// or a viewer's request.
    pub(crate) fn read_only(&self) -> bool {
        self.options.read_only || access::caller().is_some_and(|w| w.role == access::Role::Viewer)
    }

    /// The dashboard's form token (see [`Inner::csrf`]).
    pub(crate) async fn csrf(&self) -> String {
        self.0
            .csrf
            .get_or_init(|| {
                ui::shared_token(
                    self.client.jetstream(),
                    self.client.capabilities().presence,
                    self.options.replicas,
                )
            })
            .await
            .clone()
    }
}

impl std::ops::Deref for Api {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The API's routes for `client` (tasks are enqueued into its queue), with
/// the access log, metrics, panic recovery and body limit applied, and
/// Go's plain-text 404 and 405 for unknown paths and methods.
pub fn router(client: Client, options: ApiOptions) -> axum::Router {
    let caps = client.capabilities();
    // the client's key-value API cannot create buckets on servers before
    // PRESENCE_NEEDS (asyncjobs::capabilities)
    let too_old = (!caps.presence).then(|| {
        format!(
            "they need nats-server {} or later; this server runs {}",
            asyncjobs::capabilities::PRESENCE_NEEDS,
            caps.version
        )
    });
    let idempotency = idempotency::Keys::new(client.jetstream(), &options, too_old);
    let audit =
        access::audit::Trail::new(client.jetstream(), options.audit_max_age, options.replicas);
    let api = Api(Arc::new(Inner {
        client,
        options,
        idempotency,
        listing: Arc::new(tokio::sync::Semaphore::new(1)),
        csrf: tokio::sync::OnceCell::new(),
        served: std::sync::Mutex::default(),
        audit,
        counting: std::sync::atomic::AtomicBool::new(false),
    }));
    stats::roller::start(&api);
    if let Some(keep) = api.options.keep_history {
        let (js, replicas) = (api.client.jetstream(), api.options.replicas);
        tokio::spawn(async move { history::prepare(&js, keep, replicas).await });
    }
    routes::build(api)
}
