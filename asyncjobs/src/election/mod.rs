//! Leader election on a NATS KV bucket, compatible with the Go
//! implementation (docs/processing.md §7.7).
//!
//! Candidates campaign for one key (`task_scheduler` for the scheduler) in
//! the `CHORIA_AJ_ELECTIONS` bucket, whose TTL (10 s) bounds how long a
//! crashed leader keeps the key:
//!
//! * a candidate does a KV **create** of the key with its name as the value;
//!   it succeeds only when the key is absent, expired or deleted;
//! * the holder refreshes the key every campaign interval (0.75 × TTL =
//!   7.5 s) with a KV **update** on the revision it last wrote (compare and
//!   set), which also restarts the TTL; a failed update makes it a
//!   candidate again;
//! * a win is announced (and [`Election::is_leader`] turns true) at the
//!   first successful refresh after the create, one interval later, so a
//!   previous holder that has not yet noticed its loss gets one interval to
//!   fail its own refresh;
//! * the first campaign happens after a random splay of up to 5 s.
//!
//! Go schedulers do exactly the same on the same key, so a mixed Go/Rust
//! group still elects a single leader.
//!
//! Differences from Go, both on the safe side: [`Election::is_leader`] is
//! also false when the last successful refresh is older than the TTL (the
//! key may have expired while a refresh hung), and a leader that is shut
//! down deletes the key (only if it still holds that revision) so another
//! candidate takes over at its next campaign instead of after the TTL. A
//! crashed leader's key simply expires.
//!
//! ```no_run
//! # async fn demo(nc: async_nats::Client) -> Result<(), asyncjobs::election::ElectionError> {
//! use asyncjobs::election::{Election, ElectionOptions};
//! let election = Election::builder(nc, "scheduler-1")
//!     .options(ElectionOptions::default())
//!     .on_won(|| println!("now leading"))
//!     .on_lost(|| println!("lost leadership"))
//!     .build()
//!     .await?;
//! let stop = tokio_util::sync::CancellationToken::new();
//! tokio::spawn({
//!     let election = election.clone();
//!     let stop = stop.clone();
//!     async move { election.run(stop).await }
//! });
//! // ... later
//! if election.is_leader() { /* do leader work */ }
//! stop.cancel();
//! # Ok(()) }
//! ```

mod seen;

use crate::storage::{Bucket, Storage, StorageSettings, ELECTIONS_BUCKET};
use rand::Rng;
use seen::Seen;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The election key (and event component) used by the task scheduler.
pub const TASK_SCHEDULER_ELECTION: &str = "task_scheduler";
/// Smallest bucket TTL Go accepts.
pub const MIN_TTL: Duration = Duration::from_secs(10);
/// Largest bucket TTL Go accepts.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Smallest campaign interval Go accepts.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Default upper bound of the random delay before the first campaign.
pub const DEFAULT_SPLAY: Duration = Duration::from_secs(5);

/// Errors starting or running an election (texts as in Go where Go has one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElectionError {
    /// The bucket does not exist.
    #[error("storage not ready: election bucket {0} not configured")]
    BucketNotFound(String),
    /// The bucket TTL is below 10 s (and no interval override was given).
    #[error("bucket TTL should be 10 seconds or more")]
    TtlTooShort,
    /// The bucket TTL is above one hour.
    #[error("bucket TTL should be less than or equal to 1 hour")]
    TtlTooLong,
    /// The campaign interval is too small.
    #[error("campaign interval {0:?} too small")]
    IntervalTooSmall(Duration),
    /// An interval override that does not fit in the bucket TTL.
    #[error("campaign interval {interval:?} must be shorter than the bucket TTL {ttl:?}")]
    IntervalNotBelowTtl {
        /// The configured interval.
        interval: Duration,
        /// The bucket TTL.
        ttl: Duration,
    },
    /// [`Election::run`] was called while already running.
    #[error("already running")]
    AlreadyRunning,
    /// A NATS request failed; match on [`NatsError::kind`](crate::NatsError::kind).
    #[error("nats: {0}")]
    Nats(#[source] crate::error::NatsError),
}

/// Where and how often to campaign. The defaults are Go's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionOptions {
    /// KV bucket (default `CHORIA_AJ_ELECTIONS`). Its TTL is read from the server.
    pub bucket: String,
    /// Key campaigned for (default `task_scheduler`).
    pub key: String,
    /// Campaign interval; `None` (default) = 0.75 × bucket TTL with Go's
    /// limits (TTL 10 s – 1 h, interval ≥ 5 s). When set, only
    /// `0 < interval < TTL` is required, which lets tests use short TTLs;
    /// Go candidates on the same key still use their own 0.75 × TTL.
    pub interval: Option<Duration>,
    /// Upper bound of the random delay before the first campaign (default 5 s).
    pub max_splay: Duration,
}

impl Default for ElectionOptions {
    fn default() -> Self {
        ElectionOptions {
            bucket: ELECTIONS_BUCKET.to_string(),
            key: TASK_SCHEDULER_ELECTION.to_string(),
            interval: None,
            max_splay: DEFAULT_SPLAY,
        }
    }
}

impl ElectionOptions {
    /// Campaign in another bucket.
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }
    /// Campaign for another key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }
    /// Override the campaign interval (see [`ElectionOptions::interval`]).
    pub fn campaign_interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }
    /// Upper bound of the random start delay.
    pub fn max_splay(mut self, splay: Duration) -> Self {
        self.max_splay = splay;
        self
    }
}

type Callback = Box<dyn Fn() + Send + Sync>;

/// Configures an [`Election`]; see [`Election::builder`].
pub struct ElectionBuilder {
    nc: async_nats::Client,
    api: crate::connect::JetStreamApi,
    name: String,
    options: ElectionOptions,
    on_won: Option<Callback>,
    on_lost: Option<Callback>,
}

impl std::fmt::Debug for ElectionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectionBuilder")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ElectionBuilder {
    /// Bucket, key and timings.
    pub fn options(mut self, options: ElectionOptions) -> Self {
        self.options = options;
        self
    }

    /// The JetStream API the bucket is reached through (default
    /// `$JS.API`; a client's is [`Client::jetstream_api`](crate::Client::jetstream_api)).
    pub fn jetstream_api(mut self, api: crate::connect::JetStreamApi) -> Self {
        self.api = api;
        self
    }

    /// Called when this candidate's win is announced.
    pub fn on_won(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_won = Some(Box::new(f));
        self
    }

    /// Called when an announced leader loses the key, and at shutdown while leading.
    pub fn on_lost(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_lost = Some(Box::new(f));
        self
    }

    /// Binds the bucket and validates its TTL and the interval.
    pub async fn build(self) -> Result<Election, ElectionError> {
        let store = open_bucket(self.nc, &self.api, &self.options.bucket).await?;
        let ttl = store.max_age();
        let interval = match self.options.interval {
            None => {
                if ttl < MIN_TTL {
                    return Err(ElectionError::TtlTooShort);
                }
                if ttl > MAX_TTL {
                    return Err(ElectionError::TtlTooLong);
                }
                let interval = ttl.mul_f64(0.75);
                if interval < MIN_INTERVAL {
                    return Err(ElectionError::IntervalTooSmall(interval));
                }
                interval
            }
            Some(interval) => {
                if interval.is_zero() {
                    return Err(ElectionError::IntervalTooSmall(interval));
                }
                if ttl.is_zero() || interval >= ttl {
                    return Err(ElectionError::IntervalNotBelowTtl { interval, ttl });
                }
                interval
            }
        };
        crate::metrics::election_started(&self.options.key, &self.name, interval);
        Ok(Election {
            inner: Arc::new(Inner {
                name: self.name,
                key: self.options.key,
                store,
                ttl,
                interval,
                max_splay: self.options.max_splay,
                state: Mutex::new(State::default()),
                running: AtomicBool::new(false),
                on_won: self.on_won,
                on_lost: self.on_lost,
            }),
        })
    }
}

#[derive(Default)]
struct State {
    /// Revision of our last successful create/update, while we hold the key.
    revision: Option<u64>,
    /// The win was announced.
    announced: bool,
    /// When the request that last wrote the key was sent.
    refreshed: Option<Instant>,
    /// Campaigns have been failing (for example the bucket is missing):
    /// the first failure is a warning, repeats are debug lines.
    failing: bool,
    /// What this candidate saw of other leaders.
    seen: Seen,
}

struct Inner {
    name: String,
    key: String,
    store: Bucket,
    ttl: Duration,
    interval: Duration,
    max_splay: Duration,
    state: Mutex<State>,
    running: AtomicBool,
    on_won: Option<Callback>,
    on_lost: Option<Callback>,
}

/// One candidate in an election. Cheap to clone; see the [module documentation](self).
#[derive(Clone)]
pub struct Election {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.inner.name)
            .field("key", &self.inner.key)
            .field("ttl", &self.inner.ttl)
            .field("interval", &self.inner.interval)
            .field("leader", &self.is_leader())
            .finish()
    }
}

impl Election {
    /// A candidate called `name` (the value written to the key) on this connection.
    pub fn builder(nc: async_nats::Client, name: impl Into<String>) -> ElectionBuilder {
        ElectionBuilder {
            nc,
            api: crate::connect::JetStreamApi::default(),
            name: name.into(),
            options: ElectionOptions::default(),
            on_won: None,
            on_lost: None,
        }
    }

    /// The candidate's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The bucket TTL read at start.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The campaign interval in use.
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// True while this candidate is the announced leader and its last
    /// refresh is younger than the bucket TTL.
    pub fn is_leader(&self) -> bool {
        let st = self.inner.state.lock().expect("election state");
        st.announced && st.refreshed.is_some_and(|t| t.elapsed() < self.inner.ttl)
    }

    /// Campaigns until `stop` is cancelled. At shutdown a leader calls its
    /// lost callback and releases the key.
    pub async fn run(&self, stop: CancellationToken) -> Result<(), ElectionError> {
        if self.inner.running.swap(true, Ordering::SeqCst) {
            return Err(ElectionError::AlreadyRunning);
        }
        let splay = if self.inner.max_splay.is_zero() {
            Duration::ZERO
        } else {
            rand::thread_rng().gen_range(Duration::ZERO..self.inner.max_splay)
        };
        tracing::debug!(name = %self.inner.name, key = %self.inner.key, ?splay, interval = ?self.inner.interval, "starting election");
        let started = tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(splay) => true,
        };
        if started {
            let mut ticker = tokio::time::interval(self.inner.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.campaign() => {}
                }
            }
        }
        self.shutdown().await;
        self.inner.running.store(false, Ordering::SeqCst);
        Ok(())
    }

    async fn campaign(&self) {
        let inner = &self.inner;
        let revision = inner.state.lock().expect("election state").revision;
        let role = if revision.is_some() {
            "leader"
        } else {
            "candidate"
        };
        crate::metrics::election_campaign(&inner.key, &inner.name, role);
        inner
            .state
            .lock()
            .expect("election state")
            .seen
            .look(time::OffsetDateTime::now_utc());
        let sent = Instant::now();
        let value = bytes::Bytes::from(inner.name.clone().into_bytes());
        match revision {
            None => match inner
                .store
                .create(&inner.key, value, || {
                    format!("creating election key {}", inner.key)
                })
                .await
            {
                Ok(Some(rev)) => {
                    tracing::debug!(name = %inner.name, key = %inner.key, rev, "election key created; announcing after the next refresh");
                    let mut st = inner.state.lock().expect("election state");
                    if std::mem::take(&mut st.failing) {
                        tracing::info!(name = %inner.name, key = %inner.key, "election campaigns work again");
                    }
                    st.revision = Some(rev);
                    st.refreshed = Some(sent);
                    st.announced = false;
                }
                Ok(None) => {
                    if std::mem::take(&mut inner.state.lock().expect("election state").failing) {
                        tracing::info!(name = %inner.name, key = %inner.key, "election campaigns work again");
                    }
                    self.see_holder().await;
                }
                Err(e) => {
                    crate::metrics::background_error("election");
                    let first = !std::mem::replace(
                        &mut inner.state.lock().expect("election state").failing,
                        true,
                    );
                    if first {
                        tracing::warn!(name = %inner.name, key = %inner.key, error = %e,
                            "election campaign failed (is the election bucket missing?); trying again every campaign interval");
                    } else {
                        tracing::debug!(name = %inner.name, key = %inner.key, error = %e, "election campaign failed again");
                    }
                }
            },
            Some(rev) => {
                let won = match inner
                    .store
                    .update(&inner.key, value, rev, || {
                        format!("refreshing election key {}", inner.key)
                    })
                    .await
                {
                    Ok(new_rev) => {
                        let mut st = inner.state.lock().expect("election state");
                        st.revision = Some(new_rev);
                        st.refreshed = Some(sent);
                        let announce = !st.announced;
                        st.announced = true;
                        Some(announce)
                    }
                    Err(e) => {
                        tracing::info!(name = %inner.name, key = %inner.key, error = %e, "election key lost");
                        None
                    }
                };
                match won {
                    Some(true) => {
                        crate::metrics::election_leader(&inner.key, &inner.name, true);
                        tracing::info!(name = %inner.name, key = %inner.key, "became leader");
                        if let Some(f) = &inner.on_won {
                            f();
                        }
                    }
                    Some(false) => {}
                    None => {
                        self.lose();
                    }
                }
            }
        }
    }

    /// Reads who holds the key and when it last refreshed it.
    async fn see_holder(&self) {
        let inner = &self.inner;
        let written = inner
            .store
            .written(&inner.key, || format!("reading election key {}", inner.key))
            .await;
        match written {
            Ok(Some(w)) if w.value != inner.name.as_bytes() => {
                let holder = String::from_utf8_lossy(&w.value);
                let mut st = inner.state.lock().expect("election state");
                st.seen.held_by(&holder, w.revision, w.at);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(name = %inner.name, key = %inner.key, error = %e, "reading the election key's holder failed");
            }
        }
    }

    /// Until when a previous leader may still have acted as leader, as far
    /// as this candidate can tell, so a new leader does not redo its work
    /// (a scheduler does not fire the slots it may have fired): the last
    /// refresh of the key this candidate saw another candidate make (server
    /// time), plus the longest that candidate can go between refreshes (the
    /// shortest gap seen between two of them, or 3/4 of the bucket's TTL,
    /// Go's interval, when only one was seen). When it saw no other
    /// leader: the time it first campaigned (whoever led before is
    /// unknown). `None` before its first campaign.
    pub fn previous_leader_until(&self) -> Option<time::OffsetDateTime> {
        self.inner
            .state
            .lock()
            .expect("election state")
            .seen
            .until(self.inner.ttl.mul_f64(0.75))
    }

    /// Drops the key from our state; calls `on_lost` if the win was announced.
    fn lose(&self) -> Option<u64> {
        let (was_announced, revision) = {
            let mut st = self.inner.state.lock().expect("election state");
            let was = st.announced;
            let rev = st.revision.take();
            st.announced = false;
            st.refreshed = None;
            (was, rev)
        };
        if was_announced {
            crate::metrics::election_leader(&self.inner.key, &self.inner.name, false);
            if let Some(f) = &self.inner.on_lost {
                f();
            }
        }
        revision
    }

    async fn shutdown(&self) {
        if let Some(rev) = self.lose() {
            // release the key so a standby need not wait for the TTL
            let release = self
                .inner
                .store
                .delete_at_revision(&self.inner.key, rev, || {
                    format!("releasing election key {}", self.inner.key)
                });
            match tokio::time::timeout(Duration::from_secs(2), release).await {
                Ok(Ok(())) => {
                    tracing::debug!(name = %self.inner.name, key = %self.inner.key, "election key released")
                }
                Ok(Err(e)) => {
                    tracing::debug!(name = %self.inner.name, error = %e, "releasing election key failed; it expires by TTL")
                }
                Err(_) => {
                    tracing::debug!(name = %self.inner.name, "releasing election key timed out; it expires by TTL")
                }
            }
        }
    }
}

/// The current key → leader name pairs of an elections bucket (for example
/// [`ELECTIONS_BUCKET`]), sorted by key: who leads each election now.
///
/// # Errors
/// [`ElectionError::BucketNotFound`] when the bucket does not exist,
/// [`ElectionError::Nats`] when it cannot be read.
pub async fn leaders(
    nc: &async_nats::Client,
    bucket: &str,
) -> Result<Vec<(String, String)>, ElectionError> {
    leaders_via(nc, &crate::connect::JetStreamApi::default(), bucket).await
}

/// [`leaders`] through the JetStream API `api` (for example a client's
/// [`Client::jetstream_api`](crate::Client::jetstream_api)).
///
/// # Errors
/// As [`leaders`].
pub async fn leaders_via(
    nc: &async_nats::Client,
    api: &crate::connect::JetStreamApi,
    bucket: &str,
) -> Result<Vec<(String, String)>, ElectionError> {
    let store = open_bucket(nc.clone(), api, bucket).await?;
    let names = store
        .keys(|| format!("listing the keys of {bucket}"))
        .await
        .map_err(ElectionError::Nats)?;
    let mut out = Vec::with_capacity(names.len());
    for k in names {
        // a key may expire between listing and reading
        if let Ok(Some(v)) = store.get(&k, || format!("reading {k} of {bucket}")).await {
            out.push((k, String::from_utf8_lossy(&v).into_owned()));
        }
    }
    Ok(out)
}

/// Opens an election bucket over `nc` through the storage layer.
async fn open_bucket(
    nc: async_nats::Client,
    api: &crate::connect::JetStreamApi,
    bucket: &str,
) -> Result<Bucket, ElectionError> {
    let settings = StorageSettings {
        api: api.clone(),
        ..StorageSettings::default()
    };
    Storage::new(nc, settings)
        .open_bucket(bucket, || format!("binding election bucket {bucket}"))
        .await
        .map_err(ElectionError::Nats)?
        .ok_or_else(|| ElectionError::BucketNotFound(bucket.to_string()))
}
