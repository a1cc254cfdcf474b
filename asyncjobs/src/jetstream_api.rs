//! Which JetStream API a connection's calls go to (docs/interfaces.md §4).

/// Which JetStream API a connection uses: the account's own (`$JS.API`,
/// the default), another JetStream domain's (`$JS.<domain>.API`, for
/// example a hub's through a leaf node) or one under a custom prefix (an
/// account importing another's JetStream). A NATS context chooses it with
/// `jetstream_domain` or `jetstream_api_prefix` (docs/interfaces.md §4).
///
/// ```
/// use asyncjobs::connect::JetStreamApi;
/// assert_eq!(JetStreamApi::default().api_prefix(), "$JS.API");
/// assert_eq!(JetStreamApi::domain("hub").unwrap().api_prefix(), "$JS.hub.API");
/// assert_eq!(
///     JetStreamApi::domain("hub").unwrap().subject("DIRECT.GET.S"),
///     "$JS.hub.API.DIRECT.GET.S"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JetStreamApi {
    prefix: String,
}

impl Default for JetStreamApi {
    /// The account's own JetStream: `$JS.API`.
    fn default() -> Self {
        JetStreamApi {
            prefix: "$JS.API".into(),
        }
    }
}

impl JetStreamApi {
    /// The JetStream of `domain`: `$JS.<domain>.API`.
    ///
    /// # Errors
    ///
    /// A domain that is empty or holds a dot, a space or a wildcard.
    pub fn domain(domain: &str) -> std::result::Result<JetStreamApi, String> {
        if domain.is_empty()
            || domain.contains(['.', '*', '>'])
            || domain.contains(char::is_whitespace)
        {
            return Err(format!(
                "invalid JetStream domain {domain:?}: it must be one subject token (no dots, spaces or wildcards)"
            ));
        }
        Ok(JetStreamApi {
            prefix: format!("$JS.{domain}.API"),
        })
    }

    /// The JetStream API under `prefix` (a trailing dot is dropped).
    ///
    /// # Errors
    ///
    /// A prefix that is empty or holds a space, a wildcard or an empty token.
    pub fn prefix(prefix: &str) -> std::result::Result<JetStreamApi, String> {
        let p = prefix.strip_suffix('.').unwrap_or(prefix);
        if p.is_empty()
            || p.contains(['*', '>'])
            || p.contains(char::is_whitespace)
            || p.split('.').any(str::is_empty)
        {
            return Err(format!(
                "invalid JetStream API prefix {prefix:?}: it must be a subject without spaces, wildcards or empty tokens"
            ));
        }
        Ok(JetStreamApi { prefix: p.into() })
    }

    /// The API subject prefix, without a trailing dot (`$JS.API`).
    pub fn api_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether this is the account's own JetStream (`$JS.API`).
    pub fn is_default(&self) -> bool {
        self.prefix == "$JS.API"
    }

    /// The subject of the API call `api` (`CONSUMER.MSG.NEXT.S.C`): the
    /// prefix, a dot and `api`.
    pub fn subject(&self, api: &str) -> String {
        format!("{}.{api}", self.prefix)
    }

    /// A JetStream context on `nc` using this API.
    pub fn context(&self, nc: async_nats::Client) -> async_nats::jetstream::Context {
        async_nats::jetstream::with_prefix(nc, &self.prefix)
    }
}

impl std::fmt::Display for JetStreamApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.prefix)
    }
}
