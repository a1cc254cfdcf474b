//! NATS CLI contexts (`~/.config/nats/context/NAME.json`), as the `nats`
//! CLI and the Go `ajc` read them.
//!
//! Every key the `nats` CLI writes is either honoured or, when it holds a
//! value, refused with an error naming it; unknown keys are refused the
//! same way unless empty. The table of keys is in docs/interfaces.md §4.

use crate::error::{Error, Result};
use crate::jetstream_api::JetStreamApi;
use serde::Deserialize;
use std::path::PathBuf;

/// The server used when no URL or context is given: `nats://127.0.0.1:4222`.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// The connection settings of a NATS CLI context.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NatsContext {
    /// Server URL(s), comma separated.
    pub url: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Token.
    pub token: String,
    /// Path to a credentials file.
    pub creds: String,
    /// Path to a file holding an nkey seed.
    pub nkey: String,
    /// Client certificate path.
    pub cert: String,
    /// Client key path.
    pub key: String,
    /// CA certificate path.
    pub ca: String,
    /// Custom inbox prefix.
    pub inbox_prefix: String,
    /// Perform the TLS handshake before the NATS protocol starts.
    pub tls_first: bool,
    /// The JetStream domain to use (`$JS.<domain>.API`), for example the
    /// hub's domain when connected to a leaf node.
    pub jetstream_domain: String,
    /// The JetStream API subject prefix (instead of `$JS.API`), for an
    /// account that imports another's JetStream.
    pub jetstream_api_prefix: String,
    /// A free-text description (not used).
    pub description: String,
    /// The `nats` CLI's colour scheme (not used).
    pub color_scheme: String,
}

/// Keys asyncjobs cannot honour: a context that sets one of them is
/// refused, naming the key and why (docs/interfaces.md §4).
const REFUSED: &[(&str, &str)] = &[
    (
        "nsc",
        "looking credentials up with the nsc tool is not supported; put the URL in `url` and the credentials file in `creds`",
    ),
    (
        "jetstream_event_prefix",
        "JetStream advisories are read on $JS.EVENT subjects only",
    ),
    (
        "user_jwt",
        "authenticating with a JWT written in the context is not supported; use a credentials file (`creds`)",
    ),
    (
        "user_seed",
        "authenticating with a seed written in the context is not supported; use a credentials file (`creds`) or an nkey file (`nkey`)",
    ),
    ("socks_proxy", "connecting through a SOCKS proxy is not supported"),
    (
        "windows_cert_store",
        "the Windows certificate store is not supported; use `cert`, `key` and `ca` files",
    ),
    (
        "windows_cert_match_by",
        "the Windows certificate store is not supported; use `cert`, `key` and `ca` files",
    ),
    (
        "windows_cert_match",
        "the Windows certificate store is not supported; use `cert`, `key` and `ca` files",
    ),
    (
        "windows_ca_certs_match",
        "the Windows certificate store is not supported; use `cert`, `key` and `ca` files",
    ),
];

/// Keys that are read ([`NatsContext`]'s fields).
const HONOURED: &[&str] = &[
    "url",
    "user",
    "password",
    "token",
    "creds",
    "nkey",
    "cert",
    "key",
    "ca",
    "inbox_prefix",
    "tls_first",
    "jetstream_domain",
    "jetstream_api_prefix",
    "description",
    "color_scheme",
];

/// Whether a context value counts as unset: the `nats` CLI writes every key
/// it knows, empty when not used.
fn unset(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Bool(b) => !b,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        serde_json::Value::Number(_) => false,
    }
}

/// The directory contexts are read from: `$XDG_CONFIG_HOME/nats/context`,
/// else `~/.config/nats/context`.
pub fn context_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("nats").join("context"));
    }
    std::env::var_os("HOME").map(|h| {
        PathBuf::from(h)
            .join(".config")
            .join("nats")
            .join("context")
    })
}

impl NatsContext {
    /// Loads the context called `name`.
    pub fn load(name: &str) -> Result<NatsContext> {
        if name.is_empty() || name.contains(['/', '\\']) || name.contains("..") {
            return Err(Error::Config(format!("invalid NATS context name {name:?}")));
        }
        let dir = context_dir().ok_or_else(|| {
            Error::Config("cannot find the NATS context directory: HOME is not set".into())
        })?;
        let path = dir.join(format!("{name}.json"));
        let data = std::fs::read(&path).map_err(|e| {
            Error::Config(format!(
                "unknown context {name:?}: reading {}: {e}",
                path.display()
            ))
        })?;
        NatsContext::parse(&data)
            .map_err(|e| Error::Config(format!("NATS context {name:?} ({}): {e}", path.display())))
    }

    /// Reads a context file's JSON. Refuses (naming the key) a key
    /// asyncjobs cannot honour and an unknown key, when they hold a value;
    /// empty ones are ignored.
    ///
    /// # Errors
    ///
    /// A message naming the key (never its value, which may be a
    /// secret), for example `jetstream_event_prefix is set: JetStream advisories are read on $JS.EVENT subjects
    /// only`, or the JSON error. [`load`](NatsContext::load) wraps it in
    /// [`Error::Config`] with the context's name and file.
    pub fn parse(data: &[u8]) -> std::result::Result<NatsContext, String> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))?;
        for (key, value) in &map {
            if HONOURED.contains(&key.as_str()) || unset(value) {
                continue;
            }
            return Err(match REFUSED.iter().find(|(k, _)| k == key) {
                Some((_, why)) => format!("{key} is set: {why}"),
                None => format!(
                    "unknown key {key:?} is set; asyncjobs does not know what it means, remove it or leave it empty"
                ),
            });
        }
        let ctx: NatsContext = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| format!("invalid value: {e}"))?;
        ctx.jetstream_api()?;
        Ok(ctx)
    }

    /// The JetStream API the context selects: `jetstream_domain`,
    /// `jetstream_api_prefix` or the account's own (`$JS.API`).
    ///
    /// # Errors
    ///
    /// Both keys set, or a value that is not a valid subject part, named
    /// by key.
    pub fn jetstream_api(&self) -> std::result::Result<JetStreamApi, String> {
        match (
            self.jetstream_domain.is_empty(),
            self.jetstream_api_prefix.is_empty(),
        ) {
            (true, true) => Ok(JetStreamApi::default()),
            (false, true) => JetStreamApi::domain(&self.jetstream_domain)
                .map_err(|e| format!("jetstream_domain: {e}")),
            (true, false) => JetStreamApi::prefix(&self.jetstream_api_prefix)
                .map_err(|e| format!("jetstream_api_prefix: {e}")),
            (false, false) => {
                Err("jetstream_domain and jetstream_api_prefix are both set; set only one".into())
            }
        }
    }

    /// The server URL(s), [`DEFAULT_URL`]
    /// (`nats://127.0.0.1:4222`) when the context has none.
    pub fn server_url(&self) -> String {
        if self.url.is_empty() {
            DEFAULT_URL.to_string()
        } else {
            self.url.clone()
        }
    }

    /// Connection options carrying the context's credentials and TLS settings.
    pub async fn connect_options(&self) -> Result<async_nats::ConnectOptions> {
        let mut opts = async_nats::ConnectOptions::new();
        if !self.user.is_empty() {
            opts = opts.user_and_password(self.user.clone(), self.password.clone());
        }
        if !self.token.is_empty() {
            opts = opts.token(self.token.clone());
        }
        if !self.creds.is_empty() {
            opts = opts
                .credentials_file(expand(&self.creds))
                .await
                .map_err(|e| Error::Config(format!("reading credentials {}: {e}", self.creds)))?;
        }
        if !self.nkey.is_empty() {
            let seed = std::fs::read_to_string(expand(&self.nkey))
                .map_err(|e| Error::Config(format!("reading nkey {}: {e}", self.nkey)))?;
            opts = opts.nkey(seed.trim().to_string());
        }
        if !self.ca.is_empty() {
            opts = opts
                .add_root_certificates(expand(&self.ca))
                .require_tls(true);
        }
        if !self.cert.is_empty() || !self.key.is_empty() {
            opts = opts
                .add_client_certificate(expand(&self.cert), expand(&self.key))
                .require_tls(true);
        }
        if !self.inbox_prefix.is_empty() {
            opts = opts.custom_inbox_prefix(self.inbox_prefix.clone());
        }
        if self.tls_first {
            opts = opts.tls_first();
        }
        Ok(opts)
    }
}

fn expand(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(json: &str) -> String {
        NatsContext::parse(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn every_refused_key_is_named_with_the_reason() {
        let cases = [
            (r#"{"nsc": "nsc://op/acc/user"}"#, "nsc is set: looking credentials up with the nsc tool is not supported"),
            (r#"{"jetstream_event_prefix": "x"}"#, "jetstream_event_prefix is set: JetStream advisories are read on $JS.EVENT subjects only"),
            (r#"{"user_jwt": "eyJ0"}"#, "user_jwt is set: authenticating with a JWT written in the context is not supported"),
            (r#"{"user_seed": "SUAB"}"#, "user_seed is set: authenticating with a seed written in the context is not supported"),
            (r#"{"socks_proxy": "socks5://p:1080"}"#, "socks_proxy is set: connecting through a SOCKS proxy is not supported"),
            (r#"{"windows_cert_store": "user"}"#, "windows_cert_store is set: the Windows certificate store is not supported"),
            (r#"{"windows_cert_match_by": "subject"}"#, "windows_cert_match_by is set: the Windows certificate store is not supported"),
            (r#"{"windows_cert_match": "me"}"#, "windows_cert_match is set: the Windows certificate store is not supported"),
            (r#"{"windows_ca_certs_match": ["ca"]}"#, "windows_ca_certs_match is set: the Windows certificate store is not supported"),
        ];
        for (json, want) in cases {
            let e = refused(json);
            assert!(e.starts_with(want), "{json}: {e}");
        }
        assert_eq!(REFUSED.len(), cases.len(), "every refused key has a case");
    }

    #[test]
    fn secrets_are_not_repeated_in_errors() {
        let e = refused(r#"{"user_seed": "SUASECRET"}"#);
        assert!(!e.contains("SUASECRET"), "{e}");
        let e = refused(r#"{"new_key": "SECRET"}"#);
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_when_set_and_ignored_when_empty() {
        let e = refused(r#"{"url": "nats://a:1", "flux_capacitor": "on"}"#);
        assert!(
            e.starts_with("unknown key \"flux_capacitor\" is set"),
            "{e}"
        );
        let e = refused(r#"{"retries": 3}"#);
        assert!(e.starts_with("unknown key \"retries\" is set"), "{e}");
        for empty in [r#""""#, "false", "null", "[]", "{}"] {
            let json = format!(r#"{{"url": "nats://a:1", "flux_capacitor": {empty}}}"#);
            let ctx = NatsContext::parse(json.as_bytes()).expect(&json);
            assert_eq!(ctx.url, "nats://a:1");
        }
    }

    #[test]
    fn a_context_as_the_nats_cli_writes_it_is_read() {
        let json = r#"{
          "description": "prod", "url": "nats://a:1", "socks_proxy": "", "token": "",
          "user": "u", "password": "p", "creds": "", "nkey": "", "cert": "", "key": "",
          "ca": "", "nsc": "", "jetstream_domain": "hub", "jetstream_api_prefix": "",
          "jetstream_event_prefix": "", "inbox_prefix": "_I", "user_jwt": "",
          "user_seed": "", "color_scheme": "dark", "tls_first": false,
          "windows_cert_store": "", "windows_cert_match_by": "", "windows_cert_match": "",
          "windows_ca_certs_match": null
        }"#;
        let ctx = NatsContext::parse(json.as_bytes()).unwrap();
        assert_eq!(ctx.user, "u");
        assert_eq!(ctx.inbox_prefix, "_I");
        assert_eq!(ctx.jetstream_api().unwrap().api_prefix(), "$JS.hub.API");
    }

    #[test]
    fn the_jetstream_api_comes_from_the_domain_or_the_prefix() {
        let api =
            |json: &str| NatsContext::parse(json.as_bytes()).map(|c| c.jetstream_api().unwrap());
        assert_eq!(api("{}").unwrap().api_prefix(), "$JS.API");
        assert_eq!(
            api(r#"{"jetstream_domain": "hub"}"#).unwrap().api_prefix(),
            "$JS.hub.API"
        );
        assert_eq!(
            api(r#"{"jetstream_api_prefix": "JS.acc.API."}"#)
                .unwrap()
                .api_prefix(),
            "JS.acc.API"
        );
        let e = refused(r#"{"jetstream_domain": "hub", "jetstream_api_prefix": "x.API"}"#);
        assert_eq!(
            e,
            "jetstream_domain and jetstream_api_prefix are both set; set only one"
        );
        let e = refused(r#"{"jetstream_domain": "a.b"}"#);
        assert!(
            e.starts_with("jetstream_domain: invalid JetStream domain \"a.b\""),
            "{e}"
        );
        let e = refused(r#"{"jetstream_api_prefix": "JS.*.API"}"#);
        assert!(
            e.starts_with("jetstream_api_prefix: invalid JetStream API prefix"),
            "{e}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error() {
        let e = refused(r#"{"url": 5}"#);
        assert!(e.starts_with("invalid value: "), "{e}");
        let e = refused("not json");
        assert!(e.starts_with("invalid JSON: "), "{e}");
    }
}
