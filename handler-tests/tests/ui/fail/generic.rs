use asyncjobs::{task_handler, HandlerError};

#[task_handler("generic:type")]
async fn with_type<T: serde::de::DeserializeOwned>(payload: T) -> Result<(), HandlerError> {
    let _ = payload;
    Ok(())
}

#[task_handler("generic:lifetime")]
async fn with_lifetime<'a>(payload: String) -> Result<(), HandlerError> {
    let _ = payload;
    Ok(())
}

#[task_handler("generic:impl")]
async fn with_impl(payload: impl serde::de::DeserializeOwned) -> Result<(), HandlerError> {
    let _ = payload;
    Ok(())
}

fn main() {}
