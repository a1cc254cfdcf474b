use asyncjobs::{task_handler, HandlerError};

#[task_handler("email new")]
async fn spaces(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

#[task_handler("email.new")]
async fn dots(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

#[task_handler]
async fn missing(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

#[task_handler(queue = "EMAIL")]
async fn options_only(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

#[task_handler(42)]
async fn not_a_string(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

fn main() {}
