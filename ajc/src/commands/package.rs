//! `ajc package docker|cargo` (docs/interfaces.md §1.8): reads `asyncjobs.yaml`,
//! prints Go's settings and handler tables and writes the project.

use super::{emitln, Ctx};
use crate::error::{CliError, Result};
use crate::package::render::{self, Target};
use crate::package::{self as spec, Kind, Plan, Source};
use crate::table::Table;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `ajc package …` (docs/interfaces.md §1.8).
#[derive(Args, Debug)]
pub struct PackageArgs {
    /// Use a specific configuration file rather than asyncjobs.yaml
    #[arg(
        long,
        global = true,
        default_value = "asyncjobs.yaml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
    /// The package command.
    #[command(subcommand)]
    pub cmd: PackageCmd,
}

/// `ajc package docker|cargo`.
#[derive(Subcommand, Debug)]
pub enum PackageCmd {
    /// Creates a Cargo project and a Dockerfile for a container hosting the handlers
    Docker(PackageOutput),
    /// Creates a Cargo project building a worker binary hosting the handlers
    Cargo(PackageOutput),
}

/// Where `ajc package` writes.
#[derive(Args, Debug)]
pub struct PackageOutput {
    /// Directory to write the project to (created when missing)
    #[arg(long, short = 'o', default_value = ".", value_name = "DIR")]
    pub output: PathBuf,
    /// Overwrite files the project writes that already exist
    #[arg(long, short = 'f')]
    pub force: bool,
}

/// Runs `ajc package …`: checks the file, refuses to overwrite without
/// `--force`, prints the plan's tables and writes the project.
pub fn run(ctx: &Ctx, a: &PackageArgs) -> Result<()> {
    let (target, out) = match &a.cmd {
        PackageCmd::Docker(o) => (Target::Docker, o),
        PackageCmd::Cargo(o) => (Target::Cargo, o),
    };
    let plan = spec::load(&a.file).map_err(CliError::msg)?;
    let dir = std::path::absolute(&out.output)
        .map_err(|e| CliError::msg(format!("{}: {e}", out.output.display())))?;
    let project = render::render(&plan, target, &dir).map_err(CliError::msg)?;
    if !out.force {
        let existing = render::existing(&project, &dir);
        if !existing.is_empty() {
            let list: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
            return Err(CliError::msg(format!(
                "refusing to overwrite {} (use --force)",
                list.join(", ")
            )));
        }
    }
    emitln(settings_table(&plan).render(&ctx.ui));
    emitln(handlers_table(&plan).render(&ctx.ui));
    emitln("");

    render::write(&project, &dir).map_err(CliError::msg)?;
    match target {
        Target::Docker => emitln(format!(
            "Build your container using 'docker build {}'",
            dir.display()
        )),
        Target::Cargo => emitln(format!(
            "Build your worker using 'cargo build --release --manifest-path {}'",
            dir.join("Cargo.toml").display()
        )),
    }
    Ok(())
}

/// Go's "Handler Microservice Settings" table, with the Rust project's rows.
fn settings_table(plan: &Plan) -> Table {
    let mut settings = Table::new("Handler Microservice Settings", &["Setting", "Value"]);
    let discard = if plan.discard.is_empty() {
        "none".to_string()
    } else {
        plan.discard.join(", ")
    };
    let asyncjobs = match &plan.asyncjobs {
        Source::Version(v) => v.clone(),
        Source::Path(p) => p.display().to_string(),
    };
    for (k, v) in [
        ("Package Name", plan.name.clone()),
        ("Cargo Package", plan.package.clone()),
        ("NATS Context Name", plan.nats.clone()),
        ("Work Queue", plan.queue.clone()),
        ("Task Handlers", plan.handlers.len().to_string()),
        ("Retry Backoff Policy", plan.retry.clone()),
        ("End State Discard", discard),
        ("asyncjobs crate", asyncjobs),
        (
            "OpenTelemetry Traces",
            if plan.otel {
                "exported to OTEL_EXPORTER_OTLP_ENDPOINT (feature otel)".into()
            } else {
                "off (rust.otel: true turns them on)".into()
            },
        ),
    ] {
        settings.row(vec![k.into(), v.into()]);
    }
    if let Some(go) = &plan.go_version {
        settings.row(vec![
            "github.com/choria-io/asyncjobs".into(),
            format!("{go} (Go library version, not used)").into(),
        ]);
    }
    settings
}

/// Go's "Handler Configuration and Packages" table: each task type and
/// how it is handled.
fn handlers_table(plan: &Plan) -> Table {
    let mut handlers = Table::new(
        "Handler Configuration and Packages",
        &["Task Type", "Handler Kind", "Detail"],
    );
    for h in &plan.handlers {
        let (kind, detail) = match &h.kind {
            Kind::Command(c) => ("External Command", c.clone()),
            Kind::Remote => (
                "Request-Reply Service",
                asyncjobs::remote::subject_for(&h.task_type),
            ),
            Kind::Crate { name, source } => ("Rust Crate", render::crate_detail(name, source)),
        };
        handlers.row(vec![
            render::shown_type(&h.task_type).into(),
            kind.into(),
            detail.into(),
        ]);
    }
    handlers
}
