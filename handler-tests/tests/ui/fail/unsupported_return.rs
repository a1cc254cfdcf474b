use asyncjobs::{task_handler, HandlerError};

#[task_handler("no:return")]
async fn no_return(p: String) {
    let _ = p;
}

#[task_handler("plain:return")]
async fn plain_return(p: String) -> String {
    p
}

#[task_handler("option:return")]
async fn option_return(p: String) -> Option<String> {
    Some(p)
}

#[task_handler("impl:return")]
async fn impl_return(p: String) -> Result<impl serde::Serialize, HandlerError> {
    Ok(p)
}

/// Looks like a result by name, but is not one.
struct MyResult<T>(T);

#[task_handler("fake:result")]
async fn fake_result(p: String) -> MyResult<String> {
    MyResult(p)
}

fn main() {}
