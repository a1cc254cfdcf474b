//! Serving the API the way `ajc server run` does (docs/interfaces.md §2.1): the
//! bind address rules, TLS and mutual TLS with rustls (each request carries
//! its connection's verified client certificate, [`PeerCertificate`],
//! docs/interfaces.md §2.8), the read-header timeout, a cap on open
//! connections and graceful shutdown.

use crate::PeerCertificate;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Go's read-header timeout.
pub const READ_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections [`serve`] holds open at once by default.
pub const MAX_CONNECTIONS: usize = 1024;

/// What a client's connection may hold, so that no client, however slow or
/// silent, keeps the server from answering others (docs/interfaces.md §2.1).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// How long a client has to send its first bytes on a new connection
    /// (the whole HTTP/2 preface for HTTP/2 without TLS), to finish the TLS
    /// handshake, and to send each HTTP/1 request's headers (also how long
    /// an idle keep-alive connection stays open); on HTTP/2 also the
    /// interval of the server's pings and how long one may go unanswered
    /// before the connection is closed. Default
    /// [`READ_HEADER_TIMEOUT`], Go's 5 s.
    pub header_read_timeout: Duration,
    /// Most connections served at once (default [`MAX_CONNECTIONS`]); at
    /// the cap, no further connection is accepted until one closes, so
    /// they wait in the listen backlog. Go has no cap. At least 1.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: READ_HEADER_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Certificate files for TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PEM certificate chain (`--tls-cert`).
    pub cert: Option<PathBuf>,
    /// PEM private key (`--tls-key`).
    pub key: Option<PathBuf>,
    /// PEM CA bundle client certificates must chain to (`--tls-client-ca`);
    /// turns on mutual TLS.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Checks the combination (Go's messages): both `cert` and `key` or
    /// neither; `client_ca` only with both.
    ///
    /// # Errors
    /// The flag combination that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.cert.is_some() != self.key.is_some() {
            return Err("both --tls-cert and --tls-key must be supplied together".into());
        }
        if self.client_ca.is_some() && self.cert.is_none() {
            return Err("--tls-client-ca requires --tls-cert and --tls-key".into());
        }
        Ok(())
    }

    /// True when a certificate is configured.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    /// True when clients must present certificates.
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }
}

/// What guards a server that other hosts can reach ([`check_bind`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Guards {
    /// The operator accepts an unguarded server (`--unsafe-bind`).
    pub unsafe_bind: bool,
    /// Clients must present certificates (`--tls-client-ca`).
    pub mutual_tls: bool,
    /// Connections are TLS (`--tls-cert`).
    pub tls: bool,
    /// Clients must present credentials (`--tokens`).
    pub tokens: bool,
}

/// Resolves `bind` (`host:port`, host an IP literal or `localhost`) and
/// refuses an address other hosts can reach unless `guards` allow it:
/// `unsafe_bind`, mutual TLS, or tokens over TLS; tokens over plain HTTP
/// do not, since anyone on the way reads them (docs/interfaces.md §2.1: an
/// empty host, `0.0.0.0` and `::` count as reachable).
///
/// # Errors
/// A message naming the address and the flags that would allow it.
///
/// ```
/// use asyncjobs_http::server::{check_bind, Guards};
/// assert!(check_bind("127.0.0.1:8080", Guards::default()).is_ok());
/// assert!(check_bind("0.0.0.0:8080", Guards::default()).is_err());
/// let tokens_over_tls = Guards { tls: true, tokens: true, ..Guards::default() };
/// assert!(check_bind("0.0.0.0:8080", tokens_over_tls).is_ok());
/// ```
pub fn check_bind(bind: &str, guards: Guards) -> Result<SocketAddr, String> {
    let (host, port) = bind
        .rsplit_once(':')
        .ok_or_else(|| format!("invalid --bind {bind:?}: expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid --bind {bind:?}: bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host.is_empty() {
        IpAddr::from([0, 0, 0, 0])
    } else if host == "localhost" {
        ("localhost", port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    } else {
        host.parse().map_err(|_| {
            format!("invalid --bind {bind:?}: the host must be an IP address or localhost")
        })?
    };
    let guarded = guards.unsafe_bind || guards.mutual_tls || (guards.tokens && guards.tls);
    if !ip.is_loopback() && !guarded {
        return Err(if guards.tokens {
            format!(
                "refusing to listen on {bind}: it is reachable from other hosts and --tokens over plain HTTP hands every token to anyone on the network; serve TLS (--tls-cert and --tls-key), use a loopback address, or pass --unsafe-bind"
            )
        } else {
            format!(
                "refusing to listen on {bind}: it is reachable from other hosts and the API has no authentication; use a loopback address, require client certificates (--tls-client-ca), require tokens over TLS (--tokens with --tls-cert and --tls-key), or pass --unsafe-bind"
            )
        });
    }
    Ok(SocketAddr::new(ip, port))
}

/// The rustls server configuration for `files` (TLS 1.2 and 1.3; with a
/// client CA, every client must present a chain verifying against it).
///
/// # Errors
/// Unreadable or invalid PEM files, a key that does not match.
pub fn rustls_config(files: &TlsFiles) -> io::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {}: {e}", path.display()),
        )
    };
    let (Some(cert), Some(key)) = (&files.cert, &files.key) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "both --tls-cert and --tls-key must be supplied together",
        ));
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid("reading certificate", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("reading certificate", cert, &e))?;
    if chain.is_empty() {
        return Err(invalid(
            "reading certificate",
            cert,
            &"no certificate in the file",
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("reading key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| invalid("reading client CA", ca, &e))?
            {
                let c = c.map_err(|e| invalid("reading client CA", ca, &e))?;
                roots
                    .add(c)
                    .map_err(|e| invalid("reading client CA", ca, &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| invalid("using client CA", ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| invalid("using certificate", cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `app` on `listener` until `stop` is cancelled, then stops
/// accepting and gives open requests up to `grace` to finish. With `tls`,
/// connections are TLS (and mutual TLS with a client CA). Connections are
/// bounded by the default [`ConnectionLimits`].
///
/// # Errors
/// Listener and TLS configuration failures.
pub async fn serve(
    listener: std::net::TcpListener,
    app: axum::Router,
    tls: Option<rustls::ServerConfig>,
    grace: Duration,
    stop: CancellationToken,
) -> io::Result<()> {
    serve_with_limits(listener, app, tls, grace, stop, ConnectionLimits::default()).await
}

/// [`serve`] with the connection `limits` given.
///
/// # Errors
/// Listener and TLS configuration failures.
pub async fn serve_with_limits(
    listener: std::net::TcpListener,
    app: axum::Router,
    tls: Option<rustls::ServerConfig>,
    grace: Duration,
    stop: CancellationToken,
    limits: ConnectionLimits,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        shutdown.graceful_shutdown(Some(grace));
    });
    let service = Capped::new(app.into_make_service(), limits.max_connections);
    let opening = FirstBytes {
        timeout: limits.header_read_timeout,
    };
    match tls {
        Some(config) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
            let tls = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .handshake_timeout(limits.header_read_timeout)
                .acceptor(opening);
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(Peers { inner: tls })
                .handle(handle);
            configure(server.http_builder(), &limits);
            server.serve(service).await
        }
        None => {
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(opening)
                .handle(handle);
            configure(server.http_builder(), &limits);
            server.serve(service).await
        }
    }
}

fn configure(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: &ConnectionLimits,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // HTTP/2 has no header timeout: a client that sent the preface and
    // then nothing would hold its connection slot for good. Pings every
    // header_read_timeout, unanswered for as long, close it.
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
}

/// Closes a new connection whose client sends nothing (or only part of
/// the HTTP/2 preface) within `timeout`: hyper's HTTP/1 header timeout only
/// starts once the protocol is known, which takes the client's first bytes.
#[derive(Debug, Clone, Copy)]
struct FirstBytes {
    timeout: Duration,
}

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for FirstBytes {
    type Stream = tokio::net::TcpStream;
    type Service = S;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = io::Result<(tokio::net::TcpStream, S)>> + Send>,
    >;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, opening_bytes(&stream)).await {
                Ok(Ok(())) => Ok((stream, service)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent no request in time",
                )),
            }
        })
    }
}

/// TLS connections whose requests carry the client's verified certificate
/// ([`PeerCertificate`]) when it presented one: after `inner` (rustls, which
/// verified the chain against the client CA) accepts a connection, its
/// service is wrapped to add the certificate to each request.
#[derive(Debug, Clone)]
struct Peers<A> {
    inner: A,
}

type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

impl<A, S> axum_server::accept::Accept<tokio::net::TcpStream, S> for Peers<A>
where
    A: axum_server::accept::Accept<tokio::net::TcpStream, S, Stream = TlsStream>,
    A::Future: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = TlsStream;
    type Service = WithPeer<A::Service>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = io::Result<(TlsStream, WithPeer<A::Service>)>> + Send>,
    >;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            // the end-entity certificate comes first
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| Arc::new(PeerCertificate::from_der(cert.as_ref())));
            Ok((
                stream,
                WithPeer {
                    inner: service,
                    peer,
                },
            ))
        })
    }
}

/// A connection's service adding its client certificate, when there is
/// one, to every request.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: Option<Arc<PeerCertificate>>,
}

impl<S, B> tower_service::Service<axum::http::Request<B>> for WithPeer<S>
where
    S: tower_service::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> S::Future {
        // whatever the request says, only the connection's own certificate
        if let Some(peer) = &self.peer {
            request
                .extensions_mut()
                .insert(PeerCertificate::clone(peer));
        } else {
            request.extensions_mut().remove::<PeerCertificate>();
        }
        self.inner.call(request)
    }
}

/// Waits until the client has sent something that tells its protocol:
/// any byte but the start of the HTTP/2 preface, or the whole preface (or
/// it closed the connection).
async fn opening_bytes(stream: &tokio::net::TcpStream) -> io::Result<()> {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 || n == PREFACE.len() || buf[..n] != PREFACE[..n] {
            return Ok(());
        }
        // part of the preface: peeking again returns at once, so wait a
        // little for the rest
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The make-service of the server, holding one of `max` permits for each
/// connection it serves: its readiness waits for a free permit, which
/// stops the accept loop at the cap.
struct Capped<M> {
    inner: M,
    permits: tokio_util::sync::PollSemaphore,
    ready: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<M> Capped<M> {
    fn new(inner: M, max: usize) -> Self {
        Capped {
            inner,
            permits: tokio_util::sync::PollSemaphore::new(Arc::new(tokio::sync::Semaphore::new(
                max.max(1),
            ))),
            ready: None,
        }
    }
}

impl<M: Clone> Clone for Capped<M> {
    fn clone(&self) -> Self {
        Capped {
            inner: self.inner.clone(),
            permits: self.permits.clone(),
            ready: None,
        }
    }
}

impl<M, T, S> tower_service::Service<T> for Capped<M>
where
    M: tower_service::Service<T, Response = S>,
    M::Future: Send + 'static,
{
    type Response = Held<S>;
    type Error = M::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Held<S>, M::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), M::Error>> {
        if self.ready.is_none() {
            match self.permits.poll_acquire(cx) {
                std::task::Poll::Pending => return std::task::Poll::Pending,
                std::task::Poll::Ready(permit) => {
                    // the semaphore is never closed
                    self.ready = permit;
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, target: T) -> Self::Future {
        let permit = self.ready.take().map(Arc::new);
        let made = self.inner.call(target);
        Box::pin(async move {
            made.await.map(|inner| Held {
                inner,
                _permit: permit,
            })
        })
    }
}

/// A connection's service with its permit: the permit is given back when
/// the connection (and every clone of its service) is gone.
#[derive(Clone)]
struct Held<S> {
    inner: S,
    _permit: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

impl<S, R> tower_service::Service<R> for Held<S>
where
    S: tower_service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_rules() {
        let none = Guards::default();
        let unsafe_bind = Guards {
            unsafe_bind: true,
            ..none
        };
        let mutual = Guards {
            mutual_tls: true,
            tls: true,
            ..none
        };
        let tokens = Guards {
            tokens: true,
            ..none
        };
        let tls = Guards { tls: true, ..none };
        let tokens_over_tls = Guards {
            tokens: true,
            tls: true,
            ..none
        };
        assert!(check_bind("127.0.0.1:8080", none).is_ok());
        assert!(check_bind("[::1]:8080", none).is_ok());
        assert!(check_bind("localhost:0", none).is_ok());
        assert!(check_bind("127.0.0.1:8080", tokens).is_ok());
        for reachable in ["0.0.0.0:8080", ":8080", "[::]:8080", "192.0.2.1:80"] {
            let e = check_bind(reachable, none).unwrap_err();
            assert!(e.contains("--unsafe-bind"), "{reachable}: {e}");
            assert!(e.contains("--tokens with --tls-cert"), "{reachable}: {e}");
            assert!(check_bind(reachable, unsafe_bind).is_ok());
            assert!(check_bind(reachable, mutual).is_ok());
            assert!(check_bind(reachable, tokens_over_tls).is_ok());
            // TLS alone authenticates nobody
            assert!(check_bind(reachable, tls).is_err());
            // tokens over plain HTTP: refused, saying why
            let e = check_bind(reachable, tokens).unwrap_err();
            assert!(e.contains("plain HTTP"), "{reachable}: {e}");
            assert!(e.contains("--tls-cert"), "{reachable}: {e}");
            assert!(check_bind(
                reachable,
                Guards {
                    unsafe_bind: true,
                    ..tokens
                }
            )
            .is_ok());
        }
        assert!(check_bind("example.com:80", unsafe_bind)
            .unwrap_err()
            .contains("IP address or localhost"));
        assert!(check_bind("127.0.0.1", none).is_err());
    }

    #[test]
    fn tls_flags() {
        let cert = Some(PathBuf::from("c.pem"));
        let key = Some(PathBuf::from("k.pem"));
        let only_cert = TlsFiles {
            cert: cert.clone(),
            ..Default::default()
        };
        assert_eq!(
            only_cert.validate().unwrap_err(),
            "both --tls-cert and --tls-key must be supplied together"
        );
        let ca_alone = TlsFiles {
            client_ca: cert.clone(),
            ..Default::default()
        };
        assert!(ca_alone.validate().is_err());
        let both = TlsFiles {
            cert,
            key,
            client_ca: None,
        };
        assert!(both.validate().is_ok() && both.enabled() && !both.mutual());
    }
}
