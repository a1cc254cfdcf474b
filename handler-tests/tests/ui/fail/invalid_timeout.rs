use asyncjobs::{task_handler, HandlerError};

#[task_handler("a", timeout = "0s")]
async fn zero(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

#[task_handler("b", timeout = 30)]
async fn not_a_string(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

#[task_handler("c", timeout = "30 seconds")]
async fn bad_unit(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

#[task_handler("d", timeout = "-5s", timeout = "5s")]
async fn negative_and_duplicate(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

#[task_handler("e", timeout = "1d")]
async fn days(p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

fn main() {}
