use asyncjobs::{task_handler, HandlerError};

#[task_handler("a", queue_run_time = "500ms", queue_max_tries = -1, queue_concurrency = 0)]
async fn out_of_range(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

#[task_handler("b", queue_run_time = 10, queue_max_tries = "3", queue_concurrency = 10001)]
async fn wrong_kinds(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

#[task_handler("c", queue_run_time = "1 hour", queue_concurrency = 5, queue_concurrency = 6)]
async fn bad_duration_and_duplicate(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

fn main() {}
