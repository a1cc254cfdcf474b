use asyncjobs::{task_handler, HandlerError};

#[task_handler("a", unique = "500ms")]
async fn too_short(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

#[task_handler("b", unique = true)]
async fn not_a_string(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

#[task_handler("c", unique = "by payload")]
async fn neither(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

fn main() {}
