//! The example of issue 29, verbatim: a binary crate with a private payload
//! type, a private handler and `asyncjobs::main!()`. It must compile
//! (docs/processing.md §6.5); a binary rather than a trybuild pass case
//! because trybuild runs its pass cases and this one would start a worker.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct NewEmail {
    to: String,
    subject: String,
}

#[asyncjobs::task_handler("probe:email")]
async fn send_email(email: NewEmail) -> Result<String, std::io::Error> {
    Ok(format!("sent {} to {}", email.subject, email.to))
}

asyncjobs::main!();
