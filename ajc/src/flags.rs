//! Flags several commands share: the global connection and logging flags,
//! `--json` and `-f/--force`.

use clap::builder::FalseyValueParser;
use clap::{ArgAction, Args};

/// Flags accepted anywhere on the command line.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// NATS Context to use for connecting to JetStream
    #[arg(
        long,
        value_name = "NAME",
        env = "CONTEXT",
        default_value = "AJC",
        global = true
    )]
    pub context: String,

    /// Enable debug level logging
    #[arg(
        long,
        env = "AJC_DEBUG",
        global = true,
        action = ArgAction::SetTrue,
        value_parser = FalseyValueParser::new()
    )]
    pub debug: bool,

    /// NATS server URL(s), comma separated; used when the context file does
    /// not exist, and overrides the context's URL when it does
    #[arg(long, value_name = "URL", env = "NATS_URL", global = true)]
    pub server: Option<String>,
}

/// `--json`/`-j`.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct JsonFlag {
    /// Show JSON data
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `-f/--force`.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct ForceFlag {
    /// Do not ask for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}
