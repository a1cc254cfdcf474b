use asyncjobs::{task_handler, HandlerError};

#[task_handler("borrowed")]
async fn borrowed(name: &str) -> Result<(), HandlerError> {
    let _ = name;
    Ok(())
}

fn main() {}
