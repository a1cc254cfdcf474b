//! `ajc task delete`: removes one task's record, after confirmation.

use crate::commands::{emitln, Ctx};
use crate::connect::{client, Prepare};
use crate::error::Result;
use crate::flags::ForceFlag;
use clap::Args;

/// `ajc task delete`.
#[derive(Args, Debug)]
pub struct TaskDeleteArgs {
    /// The Task ID to remove
    pub id: String,
    #[command(flatten)]
    pub force: ForceFlag,
}

/// `task delete`, after confirmation.
pub async fn run(ctx: &Ctx, a: &TaskDeleteArgs) -> Result<()> {
    let client = client(&ctx.global, Prepare::Nothing, Ok).await?;
    if !a.force.force
        && !ctx.ui.confirm(&format!(
            "Really remove Task {}, work queue entries will not be removed",
            a.id
        ))?
    {
        return Ok(());
    }
    client.delete_task(&a.id).await?;
    emitln(format!("Removed Task {}", a.id));
    Ok(())
}
