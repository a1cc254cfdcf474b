//! Who may use the API and the dashboard, and what they did
//! (docs/interfaces.md §2.8).
//!
//! Without credentials ([`ApiOptions::credentials`](crate::ApiOptions)
//! empty) every request is `anonymous` and may act unless the API is
//! read-only, as before. With credentials, every request but the probes
//! (`/healthz`, `/readyz`) and the dashboard's sign-in page names one by
//! its token: `Authorization: Bearer <token>` from programs, the
//! `aj_token` cookie the sign-in page sets in a browser, or, without
//! either, by the verified client certificate of its mutual TLS connection
//! (a `cert` line names its subject common name; [`PeerCertificate`]). A
//! `viewer` reads; an `operator` also acts (every method but `GET`,
//! `HEAD`, `OPTIONS`). Unknown tokens and unlisted certificates are
//! refused with 401, a viewer's action with 403.
//!
//! Every request that may change something (any method but `GET`,
//! `HEAD`, `OPTIONS`), allowed or refused, is written to the audit trail
//! ([`audit`]) with who made it.

pub(crate) mod audit;
mod peer;

pub use peer::PeerCertificate;

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

/// Longest certificate common name accepted, in characters (X.509's
/// upper bound for the attribute, `ub-common-name`).
pub const MAX_COMMON_NAME_LEN: usize = 64;

/// The third field of a credentials line naming a certificate instead of
/// a token (shorter than [`MIN_TOKEN_LEN`], so never a token).
const CERT: &str = "cert";

/// A name with its role, proven by a token or by a client certificate's
/// subject common name. The token is never printed (`Debug` shows the
/// name, the role and a certificate's common name only).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    name: String,
    role: Role,
    proof: Proof,
}

/// What a credential's holder presents.
#[derive(Clone, PartialEq, Eq)]
enum Proof {
    /// This bearer token (or the dashboard's cookie holding it).
    Token(String),
    /// A verified client certificate with this subject common name.
    Certificate(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credential");
        d.field("name", &self.name).field("role", &self.role);
        if let Proof::Certificate(cn) = &self.proof {
            d.field("common_name", cn);
        }
        d.finish_non_exhaustive()
    }
}

/// Checks a credential's name (what the audit trail records).
fn check_name(name: &str) -> Result<(), String> {
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
    Ok(())
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
        check_name(name)?;
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
            proof: Proof::Token(token.to_string()),
        })
    }

    /// A credential named `name` (the rules of [`Credential::new`]) held
    /// by a client whose verified certificate (mutual TLS) has the subject
    /// common name `common_name`, compared exactly: 1 to
    /// [`MAX_COMMON_NAME_LEN`] characters, no control characters, no
    /// space at either end.
    ///
    /// Errors: the name or common name breaks those rules.
    ///
    /// ```
    /// use asyncjobs_http::{Credential, Role};
    /// let bot = Credential::certificate("ci", Role::Operator, "CI Runner 7").unwrap();
    /// assert_eq!(bot.common_name(), Some("CI Runner 7"));
    /// assert!(Credential::certificate("ci", Role::Viewer, " padded").is_err());
    /// ```
    pub fn certificate(name: &str, role: Role, common_name: &str) -> Result<Credential, String> {
        check_name(name)?;
        if common_name.is_empty() || common_name.chars().count() > MAX_COMMON_NAME_LEN {
            return Err(format!(
                "the common name of {name}: use 1 to {MAX_COMMON_NAME_LEN} characters"
            ));
        }
        if common_name.chars().any(char::is_control) || common_name.trim() != common_name {
            return Err(format!(
                "the common name of {name}, {common_name:?}: no control characters, and no space at either end"
            ));
        }
        Ok(Credential {
            name: name.to_string(),
            role,
            proof: Proof::Certificate(common_name.to_string()),
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

    /// The client certificate common name it is held by, `None` for a
    /// token.
    pub fn common_name(&self) -> Option<&str> {
        match &self.proof {
            Proof::Certificate(cn) => Some(cn),
            Proof::Token(_) => None,
        }
    }

    fn token(&self) -> Option<&str> {
        match &self.proof {
            Proof::Token(t) => Some(t),
            Proof::Certificate(_) => None,
        }
    }
}

/// The first whitespace-separated field of `s` and what follows it.
fn field(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_at(s.find(char::is_whitespace).unwrap_or(s.len()))
}

/// Credentials from a file's text: one a line, `<role> <name> <token>`,
/// or `<role> <name> cert <common name>` for a client certificate (mutual
/// TLS) whose subject common name is the rest of the line (spaces
/// inside it kept; [`Credential::certificate`]); blank lines and lines
/// starting with `#` are skipped. Names must differ, and so must tokens
/// and common names.
///
/// Errors: the first bad line, by number (never quoting a token).
///
/// ```
/// let text = "# who may do what\noperator alice 0123456789abcdef0123\nviewer bob fedcba98765432100123\noperator ci cert CI Runner 7\n";
/// let creds = asyncjobs_http::parse_credentials(text).unwrap();
/// assert_eq!(creds.len(), 3);
/// assert_eq!(creds[2].common_name(), Some("CI Runner 7"));
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
        let (role, rest) = field(line);
        let (name, rest) = field(rest);
        let (third, rest) = field(rest);
        let rest = rest.trim();
        let credential = if third == CERT && !rest.is_empty() {
            Credential::certificate(name, role.parse().map_err(at)?, rest).map_err(at)?
        } else if third == CERT {
            return Err(at(
                "expected `<role> <name> cert <common name>`: the common name is missing".into(),
            ));
        } else if third.is_empty() || !rest.is_empty() {
            return Err(at(format!(
                "expected `<role> <name> <token>` or `<role> <name> cert <common name>`, found {} fields",
                line.split_whitespace().count()
            )));
        } else {
            Credential::new(name, role.parse().map_err(at)?, third).map_err(at)?
        };
        if out.iter().any(|c| c.name == credential.name) {
            return Err(at(format!("the name {name} is used twice")));
        }
        if out.iter().any(|c| c.proof == credential.proof) {
            return Err(at(match &credential.proof {
                Proof::Token(_) => format!("the token of {name} is another credential's"),
                Proof::Certificate(cn) => {
                    format!("the common name {cn:?} of {name} is another credential's")
                }
            }));
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

/// Runs `f` as `who`'s request. A plain `fn`, as `events::in_try` in the
/// runtime: an `async fn` would hold `f` beside the scope wrapping it.
pub(crate) fn as_caller<F: std::future::Future>(
    who: Who,
    f: F,
) -> impl std::future::Future<Output = F::Output> {
    CALLER.scope(who, f)
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
    // every token is compared, found or not
    credentials.iter().fold(None, |found, c| match c.token() {
        Some(t) if same(t.as_bytes(), token.as_bytes()) => Some(c),
        _ => found,
    })
}

/// The credential held by a certificate with the common name `cn`.
fn find_certificate<'a>(credentials: &'a [Credential], cn: &str) -> Option<&'a Credential> {
    credentials.iter().find(|c| c.common_name() == Some(cn))
}

/// A request refused before its route: who made it, when known, and the
/// answer.
pub(crate) struct Refusal {
    pub who: Option<Who>,
    /// What the audit trail names a caller without a credential by
    /// (`cert:<common name>` for an unlisted certificate), `None` for
    /// `anonymous`.
    pub stranger: Option<String>,
    pub answer: Answer,
}

/// The 401 answer of an API request without a known credential.
fn unauthenticated(message: String) -> Response {
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
        message,
    )
    .reason("unauthenticated")
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    r
}

/// How a refusal is answered.
pub(crate) enum Answer {
    /// This response.
    Response(Response),
    /// The dashboard's 403 page saying this (the caller renders it).
    Page(String),
}

/// Who makes `req`, or the answer refusing it: 401 without a known token
/// or listed certificate (a browser on the dashboard is sent to the
/// sign-in page), 403 for a viewer's action or any action on a read-only
/// API. A token (header or cookie) decides alone when one is presented;
/// without one, the connection's [`PeerCertificate`] does.
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
        let token = presented(req);
        let peer = match token {
            Some(_) => None,
            None => req.extensions().get::<PeerCertificate>(),
        };
        let found = match (token, peer) {
            (Some(t), _) => find(&api.options.credentials, t),
            (None, Some(p)) => p
                .common_name
                .as_deref()
                .and_then(|cn| find_certificate(&api.options.credentials, cn)),
            (None, None) => None,
        };
        match found {
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
            None => {
                let stranger = peer.map(|p| match &p.common_name {
                    Some(cn) => format!("cert:{cn}"),
                    None => "cert:(no common name)".to_string(),
                });
                let answer = if ui && !acts(req.method()) {
                    Redirect::to("/ui/login").into_response()
                } else {
                    unauthenticated(match peer {
                        Some(PeerCertificate {
                            common_name: Some(cn),
                        }) => format!(
                            "the client certificate {cn:?} (subject common name) is not one this server lists: use a listed certificate or send `Authorization: Bearer <token>`"
                        ),
                        Some(PeerCertificate { common_name: None }) => "the client certificate has no single subject common name, so it names no credential: send `Authorization: Bearer <token>`".to_string(),
                        None => "this server needs a token: send `Authorization: Bearer <token>`".to_string(),
                    })
                };
                return Err(Box::new(Refusal {
                    who: None,
                    stranger,
                    answer: Answer::Response(answer),
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
            stranger: None,
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

    #[test]
    fn certificate_lines_name_a_common_name() {
        let creds = parse_credentials(
            "operator ci cert CI  Runner 7 \nviewer web\tcert\tweb.example.com\noperator alice 0123456789abcdef0123\n",
        )
        .unwrap();
        assert_eq!(creds[0].common_name(), Some("CI  Runner 7"));
        assert_eq!(creds[0].role(), Role::Operator);
        assert_eq!(creds[1].common_name(), Some("web.example.com"));
        assert_eq!(creds[2].common_name(), None);
        assert!(format!("{:?}", creds[0]).contains("CI  Runner 7"));
        // a certificate is never found by its common name as a token
        assert!(find(&creds, "web.example.com").is_none());
        assert_eq!(
            find_certificate(&creds, "CI  Runner 7").unwrap().name(),
            "ci"
        );
        assert!(find_certificate(&creds, "CI Runner 7").is_none());
        assert!(find_certificate(&creds, "ci runner 7").is_none());
        assert!(find_certificate(&creds, "0123456789abcdef0123").is_none());
        let long = "x".repeat(MAX_COMMON_NAME_LEN + 1);
        for (text, says) in [
            (
                "viewer web cert",
                "line 1: expected `<role> <name> cert <common name>`",
            ),
            ("viewer web cert   ", "the common name is missing"),
            ("root web cert web.example.com", "unknown role \"root\""),
            ("viewer w/eb cert web.example.com", "credential name"),
            (&format!("viewer web cert {long}"), "use 1 to 64 characters"),
            ("viewer web cert a\u{7}b", "no control characters"),
            (
                "viewer a cert web.example.com\noperator b cert web.example.com",
                "line 2: the common name \"web.example.com\" of b is another credential's",
            ),
            (
                "viewer a cert web.example.com\noperator a 0123456789abcdef0123",
                "line 2: the name a is used twice",
            ),
            ("viewer a 0123456789abcdef0123 extra", "found 4 fields"),
        ] {
            let e = parse_credentials(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        assert!(Credential::certificate("a", Role::Viewer, "b ").is_err());
        assert!(Credential::certificate("a", Role::Viewer, "").is_err());
        assert!(Credential::certificate("a", Role::Viewer, &"é".repeat(64)).is_ok());
    }

    proptest::proptest! {
        /// Any file text: credentials or an error naming a line, never a
        /// panic, and never a token in the message.
        #[test]
        fn any_tokens_file_parses_or_names_its_line(text in "(([a-z]{0,9}|#)[ \t]{0,2}[!-~]{0,30}[ \t]{0,2}([!-~]{0,30}|cert[ \t]{1,2}[ -~]{0,40})\n?){0,6}") {
            match parse_credentials(&text) {
                Ok(creds) => {
                    for c in &creds {
                        match &c.proof {
                            Proof::Token(t) => proptest::prop_assert!(t.len() >= MIN_TOKEN_LEN),
                            Proof::Certificate(cn) => {
                                proptest::prop_assert!(!cn.is_empty() && cn.trim() == cn);
                                // the common name is the rest of its line
                                let rest_of_a_line = text.lines().any(|l| {
                                    let l = l.trim_end();
                                    l.strip_suffix(cn.as_str())
                                        .is_some_and(|head| head.ends_with([' ', '\t']))
                                });
                                proptest::prop_assert!(rest_of_a_line, "{:?}", cn);
                            }
                        }
                    }
                    // a `cert` line is never read as a token
                    proptest::prop_assert!(find(&creds, CERT).is_none());
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
                        // a certificate's common name is no secret
                        if let [_, _, token, ..] = fields[..] {
                            if token == CERT {
                                continue;
                            }
                            if token.len() >= 4 && !quotable.contains(token) {
                                proptest::prop_assert!(!e.contains(token), "{} quotes {}", e, token);
                            }
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Any common name of a valid `cert` line is read back whole.
        #[test]
        fn any_certificate_line_reads_its_common_name(
            role in "viewer|operator",
            name in "[a-z0-9._@-]{1,20}",
            gap in "[ \t]{1,3}",
            cn in "[!-~]([ -~]{0,40}[!-~])?",
        ) {
            let creds = parse_credentials(&format!("{role}{gap}{name}{gap}cert{gap}{cn}{gap}\n")).unwrap();
            proptest::prop_assert_eq!(creds[0].common_name(), Some(cn.as_str()));
            proptest::prop_assert_eq!(creds[0].role().as_str(), role.as_str());
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
