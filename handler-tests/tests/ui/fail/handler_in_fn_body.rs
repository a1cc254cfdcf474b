use asyncjobs::{task_handler, HandlerError};

#[derive(serde::Deserialize)]
struct Email {
    to: String,
}

fn main() {
    #[task_handler("email:new")]
    async fn send_email(email: Email) -> Result<String, HandlerError> {
        Ok(email.to)
    }

    // with its payload type declared in the function body too
    #[derive(serde::Deserialize)]
    struct Local {
        n: u8,
    }

    #[task_handler("local", queue = "LOCAL")]
    async fn local(p: Local) -> Result<u8, HandlerError> {
        Ok(p.n)
    }
}
