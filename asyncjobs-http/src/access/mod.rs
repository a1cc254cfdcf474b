//! Who may use the API and the dashboard, and what they did
//! (docs/interfaces.md §2.8).
//!
//! Without credentials ([`ApiOptions::credentials`](crate::ApiOptions)
//! empty) every request is `anonymous` and may act unless the API is
//! read-only, as before. With credentials, every request but the probes
//! (`/healthz`, `/readyz`) and the dashboard's sign-in page names one by
//! its token: `Authorization: Bearer <token>` from programs, the
//! `aj_token` cookie the sign-in page sets in a browser. A `viewer` reads;
//! an `operator` also acts (every method but `GET`, `HEAD`, `OPTIONS`).
//! Unknown tokens are refused with 401, a viewer's action with 403.
//!
//! Every request that may change something (any method but `GET`,
//! `HEAD`, `OPTIONS`), allowed or refused, is written to the audit trail
//! ([`audit`]) with who made it.

pub(crate) mod audit;

use crate::error::{ApiError, ErrorCode};
use crate::Api;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::fmt;

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every page and `GET` route; acts on nothing.
    Viewer,
    /// Reads and acts: enqueue, retry, cancel, delete, configure.
    Operator,
}

impl Role {
    /// `viewer` or `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            other => Err(format!(
                "unknown role {other:?}: expected viewer or operator"
            )),
        }
    }
}

/// Shortest token accepted, in bytes: shorter ones are guessed too easily.
pub const MIN_TOKEN_LEN: usize = 16;

/// A named token with its role. The token is never printed (`Debug`
/// shows the name and role only).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    name: String,
    role: Role,
    token: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// A credential named `name` (what the audit trail records: letters,
    /// digits, `.`, `_`, `-`, `@`; at most 64 bytes) holding `token`
    /// (printable ASCII without spaces, `;`, `,`, `"` or `\`, which a
    /// cookie cannot carry; at least [`MIN_TOKEN_LEN`] bytes).
    ///
    /// Errors: the name or token breaks those rules (the message says how,
    /// without the token).
    ///
    /// ```
    /// use asyncjobs_http::{Credential, Role};
    /// let alice = Credential::new("alice", Role::Operator, "0123456789abcdef0123").unwrap();
    /// assert_eq!(alice.name(), "alice");
    /// assert!(Credential::new("bob", Role::Viewer, "short").is_err());
    /// ```
    pub fn new(name: &str, role: Role, token: &str) -> Result<Credential, String> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
        if !name_ok {
            return Err(format!(
                "credential name {name:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@'"
            ));
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token of {name} is shorter than {MIN_TOKEN_LEN} bytes"
            ));
        }
        // a cookie carries it to the dashboard: none of `;` `,` `"` `\`
        if !token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b))
        {
            return Err(format!(
                "the token of {name} holds a space, one of ; , \" \\ or a character that is not printable ASCII"
            ));
        }
        Ok(Credential {
            name: name.to_string(),
            role,
            token: token.to_string(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// Credentials from a file's text: one a line, `<role> <name> <token>`;
/// blank lines and lines starting with `#` are skipped. Names must differ,
/// and so must tokens.
///
/// Errors: the first bad line, by number (never quoting a token).
///
/// ```
/// let text = "# who may do what\noperator alice 0123456789abcdef0123\nviewer bob fedcba98765432100123\n";
/// let creds = asyncjobs_http::parse_credentials(text).unwrap();
/// assert_eq!(creds.len(), 2);
/// assert!(asyncjobs_http::parse_credentials("admin carol 0123456789abcdef0123").is_err());
/// ```
pub fn parse_credentials(text: &str) -> Result<Vec<Credential>, String> {
    let mut out: Vec<Credential> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", i + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [role, name, token] = fields[..] else {
            return Err(at(format!(
                "expected `<role> <name> <token>`, found {} fields",
                fields.len()
            )));
        };
        let credential = Credential::new(name, role.parse().map_err(at)?, token).map_err(at)?;
        if out.iter().any(|c| c.name == credential.name) {
            return Err(at(format!("the name {name} is used twice")));
        }
        if out.iter().any(|c| c.token == credential.token) {
            return Err(at(format!("the token of {name} is another credential's")));
        }
        out.push(credential);
    }
    Ok(out)
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Who {
    /// The credential's name, or `anonymous` when none are configured.
    pub name: String,
    pub role: Role,
}

tokio::task_local! {
    /// The request being answered's caller (set around every handler).
    static CALLER: Who;
}

/// The caller of the request being answered, `None` outside one.
pub(crate) fn caller() -> Option<Who> {
    CALLER.try_with(Clone::clone).ok()
}

/// `name · role` of a caller who signed in with a token (the dashboard's
/// header), `None` without credentials.
pub(crate) fn signed_in() -> Option<String> {
    caller()
        .filter(|w| w.name != "anonymous")
        .map(|w| format!("{} · {}", w.name, w.role.as_str()))
}

/// Who did something, as a cancelled task's `last_err` names it: `place`
/// (`the HTTP API`, `the dashboard`), followed by the signed-in caller's
/// name in brackets when there is one.
pub(crate) fn by(place: &str) -> String {
    match caller().filter(|w| w.name != "anonymous") {
        Some(w) => format!("{place} ({})", w.name),
        None => place.to_string(),
    }
}

/// Runs `f` as `who`'s request.
pub(crate) async fn as_caller<F: std::future::Future>(who: Who, f: F) -> F::Output {
    CALLER.scope(who, f).await
}

/// The dashboard's cookie holding a signed-in browser's token.
pub(crate) const COOKIE: &str = "aj_token";

/// Routes answered without a credential.
fn open_route(path: &str) -> bool {
    matches!(
        path,
        "/healthz"
            | "/readyz"
            | "/ui/login"
            | "/ui/logout"
            | "/ui/assets/app.css"
            | "/ui/assets/app.js"
    )
}

/// Whether a request of this method may change something.
pub(crate) fn acts(method: &axum::http::Method) -> bool {
    use axum::http::Method as M;
    !matches!(*method, M::GET | M::HEAD | M::OPTIONS)
}

/// Whether two byte strings are equal, taking as long for any two of one
/// length (a token is not found byte by byte from timings).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The token a request presents: its bearer token, else its cookie.
fn presented(req: &Request) -> Option<&str> {
    let headers = req.headers();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The credential holding `token`.
pub(crate) fn find<'a>(credentials: &'a [Credential], token: &str) -> Option<&'a Credential> {
    // every credential is compared, found or not
    credentials.iter().fold(None, |found, c| {
        match same(c.token.as_bytes(), token.as_bytes()) {
            true => Some(c),
            false => found,
        }
    })
}

/// A request refused before its route: who made it, when known, and the
/// answer.
pub(crate) struct Refusal {
    pub who: Option<Who>,
    pub answer: Answer,
}

/// How a refusal is answered.
pub(crate) enum Answer {
    /// This response.
    Response(Response),
    /// The dashboard's 403 page saying this (the caller renders it).
    Page(String),
}

/// Who makes `req`, or the answer refusing it: 401 without a known token
/// (a browser on the dashboard is sent to the sign-in page), 403 for a
/// viewer's action or any action on a read-only API.
pub(crate) fn identify(api: &Api, req: &Request) -> Result<Who, Box<Refusal>> {
    let path = req.uri().path();
    let ui = path == "/ui" || path.starts_with("/ui/");
    let who = if api.options.credentials.is_empty() {
        Who {
            name: "anonymous".into(),
            role: if api.options.read_only {
                Role::Viewer
            } else {
                Role::Operator
            },
        }
    } else {
        match presented(req).and_then(|t| find(&api.options.credentials, t)) {
            Some(c) => Who {
                name: c.name.clone(),
                role: if api.options.read_only {
                    Role::Viewer
                } else {
                    c.role
                },
            },
            None if open_route(path) => Who {
                name: "anonymous".into(),
                role: Role::Viewer,
            },
            None if ui && !acts(req.method()) => {
                return Err(Box::new(Refusal {
                    who: None,
                    answer: Answer::Response(Redirect::to("/ui/login").into_response()),
                }))
            }
            None => {
                let mut r = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthenticated,
                    "this server needs a token: send `Authorization: Bearer <token>`",
                )
                .reason("unauthenticated")
                .into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
                return Err(Box::new(Refusal {
                    who: None,
                    answer: Answer::Response(r),
                }));
            }
        }
    };
    if who.role == Role::Viewer && acts(req.method()) && !open_route(path) {
        let message = if api.options.read_only {
            "refused: this server is read-only".to_string()
        } else {
            format!("refused: {} is a viewer and may not act", who.name)
        };
        let answer = if ui {
            Answer::Page(message)
        } else {
            Answer::Response(
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::PermissionDenied, message)
                    .reason("forbidden_role")
                    .into_response(),
            )
        };
        return Err(Box::new(Refusal {
            who: Some(who),
            answer,
        }));
    }
    Ok(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_and_refuse_clearly() {
        let creds = parse_credentials(
            "# comment\n\noperator alice 0123456789abcdef0123\n viewer  bob  fedcba98765432100123 \n",
        )
        .unwrap();
        assert_eq!(creds[0].name(), "alice");
        assert_eq!(creds[1].role(), Role::Viewer);
        for (text, says) in [
            ("operator alice", "line 1: expected"),
            ("root alice 0123456789abcdef0123", "unknown role \"root\""),
            ("viewer al/ice 0123456789abcdef0123", "credential name"),
            ("viewer alice short", "shorter than 16"),
            ("viewer alice 0123456789;abcdef0123", "one of ;"),
            (
                "viewer a 0123456789abcdef0123\nviewer a 0123456789abcdef0124",
                "line 2: the name a is used twice",
            ),
            (
                "viewer a 0123456789abcdef0123\nviewer b 0123456789abcdef0123",
                "line 2: the token of b",
            ),
        ] {
            let e = parse_credentials(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(!e.contains("0123456789abcdef"), "a token is quoted: {e}");
        }
        assert!(!format!("{:?}", creds[0]).contains("0123"));
    }

    proptest::proptest! {
        /// Any file text: credentials or an error naming a line, never a
        /// panic, and never a token in the message.
        #[test]
        fn any_tokens_file_parses_or_names_its_line(text in "(([a-z]{0,9}|#)[ \t]{0,2}[!-~]{0,30}[ \t]{0,2}[!-~]{0,30}\n?){0,6}") {
            match parse_credentials(&text) {
                Ok(creds) => {
                    for c in &creds {
                        proptest::prop_assert!(c.token.len() >= MIN_TOKEN_LEN);
                    }
                }
                Err(e) => {
                    proptest::prop_assert!(e.starts_with("line "), "{}", e);
                    // an error may quote a role or a name (and the
                    // numbered line) that happens to hold a token
                    let quotable: String = text
                        .lines()
                        .flat_map(|l| l.split_whitespace().take(2))
                        .chain(["line 123456"])
                        .collect::<Vec<_>>()
                        .join(" ");
                    for line in text.lines() {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        if let [_, _, token, ..] = fields[..] {
                            if token.len() >= 4 && !quotable.contains(token) {
                                proptest::prop_assert!(!e.contains(token), "{} quotes {}", e, token);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tokens_are_found_by_value_only() {
        let creds = parse_credentials("operator a 0123456789abcdef0123").unwrap();
        assert!(find(&creds, "0123456789abcdef0123").is_some());
        assert!(find(&creds, "0123456789abcdef012").is_none());
        assert!(find(&creds, "0123456789abcdef0124").is_none());
        assert!(find(&creds, "").is_none());
    }
}
