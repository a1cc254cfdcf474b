//! `ajc task view`: one task as the Go tool shows it, or as JSON.

use super::keys::with_keys;
use super::show::show_task;
use crate::commands::Ctx;
use crate::connect::{client, Prepare};
use crate::error::Result;
use crate::flags::JsonFlag;
use asyncjobs::signing::Keys;
use clap::Args;

/// `ajc task view`.
#[derive(Args, Debug)]
pub struct TaskViewArgs {
    /// The Task ID to view
    pub id: String,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// `task view`.
pub async fn run(ctx: &Ctx, keys: Option<Keys>, a: &TaskViewArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, |b| Ok(with_keys(b, keys))).await?;
    show_task(ctx, &client, &a.id, a.out.json).await
}
