//! NATS CLI contexts (`~/.config/nats/context/NAME.json`), as the `nats`
//! CLI and the Go `ajc` read them.

use crate::error::{Error, Result};
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
        serde_json::from_slice(&data)
            .map_err(|e| Error::Config(format!("invalid NATS context {}: {e}", path.display())))
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
