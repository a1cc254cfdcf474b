use asyncjobs::{task_handler, HandlerError};

#[task_handler("a", queue = "EMAIL", queue = "OTHER")]
async fn duplicate(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

#[task_handler("b", retries = 3, max_tries = 2)]
async fn unknown(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

#[task_handler("c", queue = EMAIL, max_tries = "5", deadline = 60)]
async fn wrong_kinds(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

#[task_handler("d", queue = "MY.QUEUE", max_tries = -1, deadline = "1 hour")]
async fn wrong_values(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

#[task_handler("e", deadline = "0s", "f")]
async fn zero_deadline_and_second_type(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

#[task_handler("g", queue)]
async fn missing_value(p: String) -> Result<String, HandlerError> {
    Ok(p)
}

fn main() {}
