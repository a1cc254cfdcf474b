use asyncjobs::task_handler;

#[derive(Debug)]
struct NotAnError;

#[task_handler("email:new")]
async fn send_email(to: String) -> Result<String, NotAnError> {
    Ok(to)
}

fn main() {}
