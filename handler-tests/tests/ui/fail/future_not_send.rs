use asyncjobs::{task_handler, HandlerError};
use std::rc::Rc;

#[task_handler("not:send")]
async fn not_send(to: String) -> Result<String, HandlerError> {
    let shared = Rc::new(to);
    tokio::task::yield_now().await;
    Ok(shared.to_string())
}

fn main() {}
