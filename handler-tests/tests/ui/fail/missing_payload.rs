use asyncjobs::{task_handler, HandlerError, TaskContext};

#[task_handler("no:args")]
async fn no_args() -> Result<(), HandlerError> {
    Ok(())
}

#[task_handler("only:context")]
async fn only_context(ctx: TaskContext) -> Result<(), HandlerError> {
    let _ = ctx;
    Ok(())
}

fn main() {}
