use asyncjobs::{task_handler, HandlerError, TaskContext};

#[task_handler("two:payloads")]
async fn two_payloads(a: String, b: String) -> Result<(), HandlerError> {
    let _ = (a, b);
    Ok(())
}

#[task_handler("two:contexts")]
async fn two_contexts(a: TaskContext, p: String, b: &TaskContext) -> Result<(), HandlerError> {
    let _ = (a, p, b);
    Ok(())
}

#[task_handler("mut:context")]
async fn mut_context(a: &mut TaskContext, p: String) -> Result<(), HandlerError> {
    let _ = (a, p);
    Ok(())
}

fn main() {}
