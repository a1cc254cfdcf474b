use asyncjobs::{task_handler, HandlerError};

struct Mailer;

impl Mailer {
    #[task_handler("email:new")]
    async fn send(&self, to: String) -> Result<String, HandlerError> {
        Ok(to)
    }
}

fn main() {}
