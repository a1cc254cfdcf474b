//! Connecting to NATS the one way every part of asyncjobs does: a server
//! URL list or a NATS CLI context, a connection name and a time-out.
//!
//! ```no_run
//! use asyncjobs::connect::Connect;
//! # async fn demo() -> asyncjobs::Result<()> {
//! // a comma separated list of servers
//! let nc = Connect::url("nats://n1:4222,nats://n2:4222")
//!     .name("billing worker")
//!     .connect()
//!     .await?;
//! // server, credentials and TLS from ~/.config/nats/context/prod.json
//! let nc = Connect::context("prod").connect().await?;
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::natscontext::NatsContext;
use std::time::Duration;

/// The server used when no URL or context is given: `nats://127.0.0.1:4222`
/// (the NATS tools' default, defined beside the contexts that also fall
/// back on it).
pub use crate::natscontext::DEFAULT_URL;

/// How long establishing a connection may take by default: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection name the server shows by default.
pub const DEFAULT_NAME: &str = "Choria Asynchronous Jobs Client";

pub use crate::jetstream_api::JetStreamApi;

/// Where and how to connect to NATS; [`connect`](Connect::connect) opens
/// the connection.
///
/// Either a list of server URLs ([`Connect::url`], default [`DEFAULT_URL`])
/// or a NATS CLI context ([`Connect::context`]) that supplies the servers,
/// credentials and TLS settings; [`server_override`](Connect::server_override)
/// keeps a context's credentials but connects to other servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    servers: Option<String>,
    context: Option<String>,
    name: String,
    timeout: Duration,
    ping_interval: Option<Duration>,
    origin: Option<String>,
}

impl Default for Connect {
    /// [`DEFAULT_URL`], named [`DEFAULT_NAME`], with [`DEFAULT_TIMEOUT`].
    fn default() -> Self {
        Connect {
            servers: None,
            context: None,
            name: DEFAULT_NAME.into(),
            timeout: DEFAULT_TIMEOUT,
            ping_interval: None,
            origin: None,
        }
    }
}

impl Connect {
    /// Connects to `servers`: one URL or several separated by commas
    /// (`nats://n1:4222,nats://n2:4222`; spaces around each are ignored).
    /// The URLs are checked by [`connect`](Connect::connect).
    pub fn url(servers: impl Into<String>) -> Connect {
        Connect {
            servers: Some(servers.into()),
            ..Connect::default()
        }
    }

    /// Connects with the NATS CLI context called `name`
    /// (`~/.config/nats/context/<name>.json`, see
    /// [`natscontext`](crate::natscontext)): its servers ([`DEFAULT_URL`]
    /// when it names none), credentials and TLS settings. The file is read
    /// by [`connect`](Connect::connect).
    pub fn context(name: impl Into<String>) -> Connect {
        Connect {
            context: Some(name.into()),
            ..Connect::default()
        }
    }

    /// With a context, connects to `servers` (comma separated) instead of
    /// the context's own, keeping its credentials and TLS settings; without
    /// one, the same as [`Connect::url`]. `None` leaves the servers as they
    /// are.
    pub fn server_override(mut self, servers: Option<String>) -> Self {
        if servers.is_some() {
            self.servers = servers;
        }
        self
    }

    /// The connection name the server shows (default [`DEFAULT_NAME`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long establishing the connection may take (default
    /// [`DEFAULT_TIMEOUT`], 5 seconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often the client pings the server (default: async-nats's, one
    /// minute).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = Some(interval);
        self
    }

    /// Where the servers or context came from, for the connection's log
    /// line (for example `--url flag`, `NATS_URL environment variable`).
    /// Without it the line says `given` (or `default` when neither a URL
    /// nor a context was given).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Where this connects, for messages: `NATS context "prod"`,
    /// `nats://n1:4222 (NATS context "prod")` with a server override, or the
    /// URL list (`nats://127.0.0.1:4222` by default).
    pub fn describe(&self) -> String {
        match (&self.context, &self.servers) {
            (Some(c), None) => format!("NATS context {c:?}"),
            (Some(c), Some(s)) => format!("{s} (NATS context {c:?})"),
            (None, Some(s)) => s.clone(),
            (None, None) => DEFAULT_URL.into(),
        }
    }

    /// Loads the context (if any), checks the URLs and connects.
    ///
    /// A context that selects another JetStream (`jetstream_domain`,
    /// `jetstream_api_prefix`) is refused here, since a bare connection
    /// cannot carry that choice: use
    /// [`connect_with_jetstream`](Connect::connect_with_jetstream) and give
    /// its [`JetStreamApi`] to
    /// [`ClientBuilder::jetstream_api`](crate::ClientBuilder::jetstream_api).
    ///
    /// # Errors
    ///
    /// * [`Error::Config`] when the context cannot be read, sets a key that
    ///   cannot be honoured (named in the message) or selects another
    ///   JetStream, when its credentials or certificates cannot be loaded,
    ///   or when a URL is malformed (`invalid NATS URL "…": …`, naming the
    ///   URL);
    /// * [`Error::Nats`] when no server answers within the time-out:
    ///   `cannot connect to NATS at <urls>: <reason>`.
    pub async fn connect(self) -> Result<async_nats::Client> {
        let context = self.context.clone();
        let (nc, api) = self.connect_with_jetstream().await?;
        if !api.is_default() {
            return Err(Error::Config(format!(
                "NATS context {:?} selects the JetStream API {api} (jetstream_domain or jetstream_api_prefix), which a bare connection cannot carry: use Connect::connect_with_jetstream and ClientBuilder::jetstream_api",
                context.unwrap_or_default()
            )));
        }
        Ok(nc)
    }

    /// [`connect`](Connect::connect), also returning the JetStream API the
    /// context selects ([`JetStreamApi::default`] without a context).
    ///
    /// # Errors
    ///
    /// As [`connect`](Connect::connect), except that another JetStream is
    /// not refused.
    pub async fn connect_with_jetstream(self) -> Result<(async_nats::Client, JetStreamApi)> {
        self.open().await.map_err(Failure::into_error)
    }

    /// [`connect_with_jetstream`](Connect::connect_with_jetstream), keeping
    /// the client's error apart so callers can word it themselves.
    pub(crate) async fn open(
        self,
    ) -> std::result::Result<(async_nats::Client, JetStreamApi), Failure> {
        let (url, opts, api) = match &self.context {
            Some(name) => {
                let ctx = NatsContext::load(name).map_err(Failure::Config)?;
                let api = ctx.jetstream_api().map_err(|e| {
                    Failure::Config(Error::Config(format!("NATS context {name:?}: {e}")))
                })?;
                let opts = ctx.connect_options().await.map_err(Failure::Config)?;
                let url = self.servers.clone().unwrap_or_else(|| ctx.server_url());
                (url, opts, api)
            }
            None => (
                self.servers.clone().unwrap_or_else(|| DEFAULT_URL.into()),
                async_nats::ConnectOptions::new(),
                JetStreamApi::default(),
            ),
        };
        let addrs = parse_servers(&url).map_err(Failure::Config)?;
        let mut opts = opts
            .name(self.name.as_str())
            .connection_timeout(self.timeout);
        if let Some(interval) = self.ping_interval {
            opts = opts.ping_interval(interval);
        }
        let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        opts = opts.event_callback(move |event| {
            let lost = lost.clone();
            async move { log_event(event, &lost) }
        });
        tracing::debug!(%url, name = %self.name, "connecting to NATS");
        let nc = opts
            .connect(addrs)
            .await
            .map_err(|source| Failure::Unreachable {
                url: url.clone(),
                source,
            })?;
        let origin = match (&self.origin, &self.context, &self.servers) {
            (Some(o), _, _) => o.clone(),
            (None, Some(c), _) => format!("NATS context {c:?}"),
            (None, None, Some(_)) => "given".into(),
            (None, None, None) => "default: no URL or context given".into(),
        };
        let info = nc.server_info();
        tracing::info!(
            %url,
            server = %info.server_name,
            version = %info.version,
            jetstream = info.jetstream,
            jetstream_api = %api,
            from = %origin,
            "connected to NATS"
        );
        Ok((nc, api))
    }
}

/// Logs what happens to a connection after it is made: a lost connection
/// (the client reconnects by itself; work waits meanwhile) as a warning,
/// getting it back as info, server errors and slow consumers as warnings.
/// Server errors (a refused subscription or publish: a permissions
/// violation) are also counted in `background_error_total{loop="connection"}`
/// (docs/processing.md §8): the server answers them to no request, so no
/// loop sees them otherwise.
fn log_event(event: async_nats::Event, lost: &std::sync::atomic::AtomicBool) {
    use async_nats::Event;
    use std::sync::atomic::Ordering;
    match event {
        Event::Connected if lost.swap(false, Ordering::Relaxed) => {
            tracing::info!("reconnected to NATS")
        }
        // the first one is the connection itself, logged by `open`
        Event::Connected => tracing::debug!("connected to NATS"),
        Event::Disconnected => {
            lost.store(true, Ordering::Relaxed);
            tracing::warn!("lost the connection to NATS; reconnecting (work waits until then)")
        }
        Event::LameDuckMode => {
            tracing::warn!("the NATS server is shutting down (lame duck mode); moving to another")
        }
        Event::ServerError(e) => {
            tracing::warn!(error = %e, "NATS server error");
            crate::metrics::background_error("connection");
        }
        Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
        Event::SlowConsumer(sid) => {
            tracing::warn!(
                subscription = sid,
                "NATS slow consumer: messages were dropped"
            )
        }
        Event::Draining | Event::Closed => tracing::debug!(%event, "NATS connection"),
    }
}

/// Why [`Connect::open`] failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The settings are wrong (context, credentials, URL).
    Config(Error),
    /// No server could be reached.
    Unreachable {
        /// The URL list tried.
        url: String,
        /// The client's error.
        source: async_nats::ConnectError,
    },
}

impl Failure {
    /// The error [`Connect::connect`] returns.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::Config(e) => e,
            Failure::Unreachable { url, source } => {
                crate::error::nats(format!("cannot connect to NATS at {url}"), source).into()
            }
        }
    }
}

/// Splits a comma separated URL list (spaces around each URL are ignored)
/// and parses each URL, as [`Connect::connect`] does.
///
/// # Errors
///
/// [`Error::Config`] naming the first malformed URL:
/// `invalid NATS URL "…": …` (followed by the whole list when it has more
/// than one URL).
pub fn parse_servers(urls: &str) -> Result<Vec<async_nats::ServerAddr>> {
    urls.split(',')
        .map(str::trim)
        .map(|u| {
            u.parse::<async_nats::ServerAddr>().map_err(|e| {
                let list = if u == urls {
                    String::new()
                } else {
                    format!(" in {urls:?}")
                };
                Error::Config(format!("invalid NATS URL {u:?}{list}: {e}"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_where_it_connects() {
        assert_eq!(Connect::default().describe(), DEFAULT_URL);
        assert_eq!(Connect::url("nats://a:1").describe(), "nats://a:1");
        assert_eq!(Connect::context("x").describe(), "NATS context \"x\"");
        assert_eq!(
            Connect::context("x")
                .server_override(Some("nats://a:1".into()))
                .describe(),
            "nats://a:1 (NATS context \"x\")"
        );
        assert_eq!(
            Connect::url("nats://a:1").server_override(None).describe(),
            "nats://a:1"
        );
    }

    #[test]
    fn urls_are_split_and_checked() {
        assert_eq!(parse_servers("nats://a:1").unwrap().len(), 1);
        assert_eq!(parse_servers("nats://a:1, nats://b:2").unwrap().len(), 2);
        let e = parse_servers("nats://a:1,::::").unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(
            e.to_string()
                .contains("invalid NATS URL \"::::\" in \"nats://a:1,::::\""),
            "{e}"
        );
        let e = parse_servers("::::").unwrap_err().to_string();
        assert!(e.contains("invalid NATS URL \"::::\": "), "{e}");
    }

    #[tokio::test]
    async fn unreachable_servers_are_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("nats://127.0.0.1:{port}");
        let e = Connect::url(&url)
            .timeout(Duration::from_secs(1))
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Nats(_)), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("cannot connect to NATS at {url}: ")),
            "{e}"
        );
    }

    #[test]
    fn jetstream_apis() {
        assert!(JetStreamApi::default().is_default());
        assert_eq!(JetStreamApi::default().subject("INFO"), "$JS.API.INFO");
        let hub = JetStreamApi::domain("hub").unwrap();
        assert!(!hub.is_default());
        assert_eq!(
            hub.subject("CONSUMER.MSG.NEXT.S.C"),
            "$JS.hub.API.CONSUMER.MSG.NEXT.S.C"
        );
        assert_eq!(
            JetStreamApi::prefix("JS.x.API.").unwrap().api_prefix(),
            "JS.x.API"
        );
        for bad in ["", "a.b", "a b", "*", ">"] {
            assert!(JetStreamApi::domain(bad).is_err(), "{bad:?}");
        }
        for bad in ["", ".", "a..b", "a.*", "a >"] {
            assert!(JetStreamApi::prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_missing_context_is_a_configuration_error() {
        let e = Connect::context("no/such").connect().await.unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
    }
}
