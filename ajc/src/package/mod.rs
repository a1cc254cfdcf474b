//! `ajc package`: the handler description `asyncjobs.yaml` (docs/interfaces.md
//! §1.8, Go's keys and defaults plus a Rust crate handler kind), checked
//! into a [`Plan`] that [`render`] turns into a Cargo project (and a
//! Dockerfile).
//!
//! YAML is read with `yaml_serde`, the YAML organisation's maintained
//! continuation of `serde_yaml` (which is unmaintained), so the file is
//! decoded strictly by serde: unknown keys are refused with their line,
//! where Go's decoder ignores them.

pub mod render;

use serde::Deserialize;
use std::path::{Component, Path, PathBuf};

/// Go's default NATS context name.
pub const DEFAULT_CONTEXT: &str = "AJ";
/// Go's default Go module name (its last segment names our Cargo package).
pub const DEFAULT_NAME: &str = "choria.io/asyncjobs/handlers";

/// Words a crate cannot be linked as (`extern crate <word>` does not compile).
const RUST_KEYWORDS: &[&str] = &[
    "_", "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else",
    "enum", "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match",
    "mod", "move", "mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait",
    "true", "try", "type", "unsafe", "use", "where", "while", "yield", "abstract", "become", "do",
    "final", "macro", "override", "priv", "typeof", "unsized", "virtual",
];

/// `asyncjobs.yaml` as written (docs/interfaces.md §1.8).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// NATS context name (`AJ`).
    pub nats: Option<String>,
    /// Work queue (`DEFAULT`).
    pub queue: Option<String>,
    /// The handlers.
    pub tasks: Option<Vec<TaskSpec>>,
    /// Go module name (`choria.io/asyncjobs/handlers`).
    pub name: Option<String>,
    /// The Go library's version; shown, not used by the Rust project.
    pub asyncjobs: Option<String>,
    /// Retry policy name (`default`).
    pub retry: Option<String>,
    /// States whose task records are discarded.
    pub discard: Option<Vec<String>>,
    /// Accept unsigned tasks when a verification key is set.
    pub task_signatures_optional: Option<bool>,
    /// Rust-only settings.
    pub rust: Option<RustSpec>,
}

/// One entry of `tasks`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The task type (`""` is every type).
    #[serde(rename = "type")]
    pub task_type: Option<String>,
    /// A Go package (refused: a Rust worker cannot link it).
    pub package: Option<String>,
    /// The Go package's or the crate's version.
    pub version: Option<String>,
    /// A request-reply service.
    pub remote: Option<bool>,
    /// An external command under `commands/`.
    pub command: Option<String>,
    /// A Rust crate with a `#[task_handler]` for the type.
    #[serde(rename = "crate")]
    pub krate: Option<String>,
    /// The crate's directory (instead of `version`).
    pub path: Option<String>,
}

/// The `rust:` section: where the asyncjobs crate comes from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RustSpec {
    /// Version requirement of the asyncjobs crate (default: this ajc's version).
    pub asyncjobs: Option<String>,
    /// A directory holding the asyncjobs crate (instead of a version).
    pub asyncjobs_path: Option<String>,
    /// Build with the asyncjobs feature `otel`, so the service exports
    /// traces to `OTEL_EXPORTER_OTLP_ENDPOINT` (default: off, a smaller
    /// build).
    pub otel: Option<bool>,
}

/// Where a crate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A version requirement on crates.io.
    Version(String),
    /// A local directory (absolute).
    Path(PathBuf),
}

/// How a task type is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A program under `commands/`.
    Command(String),
    /// A request-reply service.
    Remote,
    /// A `#[task_handler]` in a crate.
    Crate {
        /// The Cargo package name.
        name: String,
        /// Where it comes from.
        source: Source,
    },
}

/// One handler of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// The task type.
    pub task_type: String,
    /// How it is handled.
    pub kind: Kind,
}

/// A checked description with Go's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The file read.
    pub file: PathBuf,
    /// Its directory (where `commands/` is).
    pub dir: PathBuf,
    /// NATS context name.
    pub nats: String,
    /// Work queue.
    pub queue: String,
    /// The `name` key.
    pub name: String,
    /// The Cargo package (and binary) name derived from `name`.
    pub package: String,
    /// The Go library version the file names, if any.
    pub go_version: Option<String>,
    /// Where the asyncjobs crate comes from.
    pub asyncjobs: Source,
    /// Whether asyncjobs is built with its feature `otel`.
    pub otel: bool,
    /// Retry policy.
    pub retry: String,
    /// Discarded states, as written.
    pub discard: Vec<String>,
    /// Unsigned tasks accepted with a verification key.
    pub signatures_optional: bool,
    /// The handlers, in file order.
    pub handlers: Vec<Handler>,
    /// The crates to link, each once, in file order: name and source.
    pub crates: Vec<(String, Source)>,
}

/// Reads and checks `file`.
///
/// # Errors
/// A message naming the file and, for a bad entry, its position and type.
pub fn load(file: &Path) -> Result<Plan, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{} does not exist (write one, or name another with --file)",
                file.display()
            ))
        }
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    let spec: Spec = if text.trim().is_empty() {
        Spec::default()
    } else {
        yaml_serde::from_str(&text)
            .map_err(|e| format!("invalid handlers file {}: {e}", file.display()))?
    };
    let dir = std::path::absolute(file)
        .map_err(|e| format!("cannot resolve {}: {e}", file.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    plan(spec, file, &dir)
}

/// Checks `spec` read from `file` in `dir`.
pub fn plan(spec: Spec, file: &Path, dir: &Path) -> Result<Plan, String> {
    let or = |v: Option<String>, d: &str| v.filter(|s| !s.is_empty()).unwrap_or_else(|| d.into());
    let nats = or(spec.nats, DEFAULT_CONTEXT);
    let queue = or(spec.queue, asyncjobs::queue::DEFAULT_QUEUE_NAME);
    asyncjobs::Queue::new(queue.clone())
        .validate()
        .map_err(|e| format!("queue {queue:?}: {e}"))?;
    let name = or(spec.name, DEFAULT_NAME);
    let retry = or(spec.retry, "default");
    if !asyncjobs::retry::policy_names().contains(&retry.as_str()) {
        return Err(format!(
            "unknown retry policy {retry:?}: use one of {}",
            asyncjobs::retry::policy_names().join(", ")
        ));
    }
    let discard = spec.discard.unwrap_or_default();
    asyncjobs::Client::builder()
        .discard_states_by_name(&discard)
        .map_err(|e| format!("discard: {e}"))?;
    let rust = spec.rust.unwrap_or_default();
    let asyncjobs = asyncjobs_source(rust.asyncjobs, rust.asyncjobs_path, dir)?;
    let handlers = handlers(spec.tasks.unwrap_or_default(), file, dir)?;
    let crates = crates(&handlers)?;
    if nats.chars().any(|c| c.is_control()) {
        return Err(format!(
            "nats: context name {nats:?} holds a control character"
        ));
    }
    Ok(Plan {
        file: file.to_path_buf(),
        dir: dir.to_path_buf(),
        nats,
        queue,
        package: unique_package_name(&name, &crates),
        name,
        go_version: spec.asyncjobs.filter(|s| !s.is_empty()),
        asyncjobs,
        otel: rust.otel.unwrap_or(false),
        retry,
        discard,
        signatures_optional: spec.task_signatures_optional.unwrap_or(false),
        handlers,
        crates,
    })
}

/// Where the `rust:` section says the asyncjobs crate comes from (this
/// ajc's version by default).
fn asyncjobs_source(
    version: Option<String>,
    path: Option<String>,
    dir: &Path,
) -> Result<Source, String> {
    Ok(match (version, path) {
        (Some(_), Some(_)) => {
            return Err("rust: give asyncjobs (a version) or asyncjobs_path, not both".into())
        }
        (Some(v), None) => Source::Version(v),
        (None, Some(p)) => Source::Path(absolute_in(dir, &p)?),
        (None, None) => Source::Version(env!("CARGO_PKG_VERSION").into()),
    })
}

/// The `tasks` entries checked, in file order, each task type once.
fn handlers(tasks: Vec<TaskSpec>, file: &Path, dir: &Path) -> Result<Vec<Handler>, String> {
    if tasks.is_empty() {
        return Err(format!("no task handlers specified in {}", file.display()));
    }
    let mut handlers: Vec<Handler> = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let h = handler(i + 1, t, dir)?;
        if handlers.iter().any(|o| o.task_type == h.task_type) {
            return Err(format!(
                "tasks entry {}: task type {:?} is listed twice",
                i + 1,
                h.task_type
            ));
        }
        handlers.push(h);
    }
    Ok(handlers)
}

/// The crates the handlers name, each once in file order; refused when
/// one is listed with two sources or two would be linked by one name.
fn crates(handlers: &[Handler]) -> Result<Vec<(String, Source)>, String> {
    let mut crates: Vec<(&str, &Source)> = Vec::new();
    for h in handlers {
        if let Kind::Crate { name, source } = &h.kind {
            if let Some((other, _)) = crates
                .iter()
                .find(|(n, _)| n != name && n.replace('-', "_") == name.replace('-', "_"))
            {
                return Err(format!(
                    "crates {other} and {name} would both be linked as `{}`",
                    name.replace('-', "_")
                ));
            }
            match crates.iter().find(|(n, _)| n == name) {
                Some((_, s)) if *s != source => {
                    return Err(format!(
                        "crate {name} is listed with two different versions or paths"
                    ))
                }
                Some(_) => {}
                None => crates.push((name, source)),
            }
        }
    }
    Ok(crates
        .into_iter()
        .map(|(n, s)| (n.to_string(), s.clone()))
        .collect())
}

/// The Cargo package name of `name`, made different from what it depends
/// on (`asyncjobs` and the handler crates) with `-service` suffixes.
fn unique_package_name(name: &str, crates: &[(String, Source)]) -> String {
    let mut package = package_name(name);
    let taken = |p: &str| {
        let p = p.replace('-', "_");
        p == "asyncjobs" || crates.iter().any(|(n, _)| n.replace('-', "_") == p)
    };
    while taken(&package) {
        package.push_str("-service");
    }
    package
}

/// Whether an optional key is given and not empty.
fn set(o: &Option<String>) -> bool {
    o.as_deref().is_some_and(|s| !s.is_empty())
}

/// Tasks entry `n` checked: a valid type and exactly one handler kind.
fn handler(n: usize, t: TaskSpec, dir: &Path) -> Result<Handler, String> {
    let Some(task_type) = t.task_type.clone() else {
        return Err(format!(
            "tasks entry {n} has no type (write type: \"\" for a handler of every type)"
        ));
    };
    if !task_type.is_empty() && !asyncjobs::task::is_valid_name(&task_type) {
        return Err(format!(
            "tasks entry {n}: task type {task_type:?} is not valid: use letters, digits, _, : and - (or \"\" for every type)"
        ));
    }
    let at = format!("tasks entry {n} (type {task_type:?})");
    let kind = match declared_kind(&at, &t)? {
        None => {
            return Err(format!(
                "{at} has no handler: give command (a program under commands/), remote: true (a request-reply service) or crate (a Rust crate with #[task_handler({task_type:?})])"
            ))
        }
        Some("package") => {
            return Err(format!(
                "{at} is the Go package {}{}, which a Rust worker cannot link: port the handler to a crate with #[asyncjobs::task_handler({task_type:?})] and list it as crate: <name> with version: or path:, or run it in a Go process serving the request-reply protocol and list it as remote: true",
                t.package.unwrap_or_default(),
                t.version.map(|v| format!("@{v}")).unwrap_or_default()
            ))
        }
        Some("command") => command_kind(&at, t, dir)?,
        Some("remote") => {
            if set(&t.version) || set(&t.path) {
                return Err(format!("{at}: version and path belong to crate handlers"));
            }
            Kind::Remote
        }
        _ => crate_kind(&at, t, dir)?,
    };
    Ok(Handler { task_type, kind })
}

/// The one handler kind an entry gives (`command`, `remote`, `crate` or
/// `package`), `None` for none; an error names them when several are given.
fn declared_kind(at: &str, t: &TaskSpec) -> Result<Option<&'static str>, String> {
    let mut kinds = Vec::new();
    if set(&t.command) {
        kinds.push("command");
    }
    if t.remote.unwrap_or(false) {
        kinds.push("remote");
    }
    if set(&t.krate) {
        kinds.push("crate");
    }
    if set(&t.package) {
        kinds.push("package");
    }
    if kinds.len() > 1 {
        return Err(format!(
            "{at} has {}: give exactly one handler kind",
            kinds.join(" and ")
        ));
    }
    Ok(kinds.first().copied())
}

/// A `command:` entry: a program inside `commands/` that exists and the
/// Dockerfile can copy.
fn command_kind(at: &str, t: TaskSpec, dir: &Path) -> Result<Kind, String> {
    if set(&t.version) || set(&t.path) {
        return Err(format!("{at}: version and path belong to crate handlers"));
    }
    let command = t.command.unwrap_or_default();
    let rel = Path::new(&command);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "{at}: command {command:?} must be a path inside commands/ (no leading / or ..)"
        ));
    }
    if command.chars().any(|c| c.is_control() || c == '$') {
        return Err(format!(
            "{at}: command {command:?} holds a control character or $, which the Dockerfile cannot copy safely"
        ));
    }
    let file = dir.join("commands").join(rel);
    if !file.is_file() {
        return Err(format!("{at}: command {} does not exist", file.display()));
    }
    Ok(Kind::Command(command))
}

/// A `crate:` entry: a crate name that can be linked, from a version or a
/// directory holding a `Cargo.toml`.
fn crate_kind(at: &str, t: TaskSpec, dir: &Path) -> Result<Kind, String> {
    let name = t.krate.unwrap_or_default();
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!("{at}: {name:?} is not a crate name"));
    }
    let linked = name.replace('-', "_");
    if linked == "asyncjobs" {
        return Err(format!(
            "{at}: crate asyncjobs is the runtime itself; list the crate holding your #[task_handler] functions"
        ));
    }
    if RUST_KEYWORDS.contains(&linked.as_str()) {
        return Err(format!(
            "{at}: crate {name:?} is linked as `{linked}`, a Rust keyword: rename the crate"
        ));
    }
    let source = match (
        t.version.filter(|s| !s.is_empty()),
        t.path.filter(|s| !s.is_empty()),
    ) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "{at}: give the crate's version or its path, not both"
            ))
        }
        (Some(v), None) => Source::Version(v),
        (None, Some(p)) => {
            let p = absolute_in(dir, &p)?;
            if !p.join("Cargo.toml").is_file() {
                return Err(format!(
                    "{at}: crate {name}: {} holds no Cargo.toml",
                    p.display()
                ));
            }
            Source::Path(p)
        }
        (None, None) => {
            return Err(format!(
                "{at}: crate {name} needs version: (from crates.io) or path: (a directory)"
            ))
        }
    };
    Ok(Kind::Crate { name, source })
}

fn absolute_in(dir: &Path, p: &str) -> Result<PathBuf, String> {
    let joined = dir.join(p);
    std::fs::canonicalize(&joined).map_err(|e| format!("{}: {e}", joined.display()))
}

/// The Cargo package name for Go module name `name`: its last path segment
/// with characters Cargo refuses turned into `-`.
pub fn package_name(name: &str) -> String {
    let last = name.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
    let mut p: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    p = p.trim_matches('-').to_string();
    if p.is_empty() || p.starts_with(|c: char| c.is_ascii_digit()) {
        p = format!("asyncjobs-{p}").trim_end_matches('-').to_string();
        if p == "asyncjobs" {
            p = "asyncjobs-handlers".into();
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_are_cargo_names() {
        assert_eq!(package_name(DEFAULT_NAME), "handlers");
        assert_eq!(package_name("git.example.com/example"), "example");
        assert_eq!(package_name("Shop.Mail/"), "shop-mail");
        assert_eq!(package_name("9lives"), "asyncjobs-9lives");
        assert_eq!(package_name("///"), "asyncjobs-handlers");
    }

    proptest::proptest! {
        #[test]
        fn any_name_gives_a_valid_package(name in ".{0,40}") {
            let p = package_name(&name);
            proptest::prop_assert!(!p.is_empty());
            proptest::prop_assert!(p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'), "{}", p);
            proptest::prop_assert!(!p.starts_with(|c: char| c.is_ascii_digit() || c == '-'));
        }

        #[test]
        fn no_yaml_text_panics_the_loader(text in ".{0,200}") {
            let spec: Result<Spec, _> = yaml_serde::from_str(&text);
            if let Ok(spec) = spec {
                let _ = plan(spec, Path::new("asyncjobs.yaml"), Path::new("/nonexistent"));
            }
        }
    }
}
