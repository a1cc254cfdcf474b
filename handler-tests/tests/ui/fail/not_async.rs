use asyncjobs::{task_handler, HandlerError};

#[task_handler("email:new")]
fn send_email(to: String) -> Result<String, HandlerError> {
    Ok(to)
}

fn main() {
    // the function is still emitted: no "cannot find function" error here
    let _ = send_email(String::new());
}
