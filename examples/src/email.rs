//! The email handlers, on the `EMAIL` queue.

use asyncjobs::{task_handler, HandlerError, TaskContext};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An email to send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewEmail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
}

/// What sending an email returns; stored as the task result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    /// The message id the mail server gave.
    pub message_id: String,
    /// The try that succeeded.
    pub attempt: i64,
}

/// Sends one email. Addresses starting with `flaky` fail their first try
/// (and are retried); addresses without `@` are terminated at once.
#[task_handler("email:new", queue = "EMAIL", max_tries = 5, deadline = "1h")]
pub async fn send_email(ctx: TaskContext, email: NewEmail) -> Result<Receipt, HandlerError> {
    if !email.to.contains('@') {
        return Err(asyncjobs::terminate(format!(
            "invalid address {:?}: retrying will not help",
            email.to
        )));
    }
    if email.to.starts_with("flaky") && ctx.tries() == 1 {
        return Err(HandlerError::retry("mail server busy, try again"));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(Receipt {
        message_id: format!("<{}@example>", ctx.id()),
        attempt: ctx.tries(),
    })
}

/// A daily digest of several messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Digest {
    /// Recipient address.
    pub to: String,
    /// Subjects to list.
    pub subjects: Vec<String>,
}

/// Builds and sends a digest; any error is retried with backoff.
#[task_handler("email:digest", queue = "EMAIL")]
pub async fn send_digest(
    digest: Digest,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    if digest.subjects.is_empty() {
        return Err("nothing to send".into());
    }
    Ok(digest.subjects.len())
}
