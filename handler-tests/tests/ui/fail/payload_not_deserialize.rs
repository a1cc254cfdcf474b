use asyncjobs::{task_handler, HandlerError};

struct NotDeserialize {
    to: String,
}

#[task_handler("email:new")]
async fn send_email(email: NotDeserialize) -> Result<String, HandlerError> {
    Ok(email.to)
}

fn main() {}
