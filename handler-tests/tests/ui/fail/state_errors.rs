use asyncjobs::{task_handler, HandlerError, State};

pub struct NotClone;

#[task_handler("a")]
async fn not_clone(State(_db): State<NotClone>, p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

mod own {
    pub struct State<T>(pub T);
}

#[task_handler("b")]
async fn own_state(_s: own::State<u8>, p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

#[task_handler("c")]
async fn by_reference(_s: &State<u8>, p: u8) -> Result<u8, HandlerError> {
    Ok(p)
}

fn main() {}
