use asyncjobs::{task_handler, HandlerError};

struct NotSerialize;

#[task_handler("email:new")]
async fn send_email(to: String) -> Result<NotSerialize, HandlerError> {
    let _ = to;
    Ok(NotSerialize)
}

#[task_handler("email:alias")]
async fn send_alias(to: String) -> std::io::Result<NotSerialize> {
    let _ = to;
    Ok(NotSerialize)
}

fn main() {}
