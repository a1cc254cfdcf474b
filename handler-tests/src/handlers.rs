//! The handlers of the test worker, on two queues. `tests/worker.rs`
//! compiles this file too, to enqueue typed tasks with the generated helpers.

use asyncjobs::{task_handler, HandlerError, TaskContext};
use serde::{Deserialize, Serialize};

/// An email to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEmail {
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
}

/// What sending an email returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// The message id.
    pub message_id: String,
    /// Recipient.
    pub to: String,
    /// The try that sent it.
    pub tries: i64,
}

/// Sends an email; fails (to be retried) while `to` starts with "flaky" and
/// this is the first try; terminates for an empty recipient.
#[task_handler("email:new", queue = "EMAIL", max_tries = 5, deadline = "1h")]
pub async fn send_email(ctx: TaskContext, email: NewEmail) -> Result<Receipt, HandlerError> {
    if email.to.is_empty() {
        return Err(asyncjobs::terminate("an email needs a recipient"));
    }
    if email.to.starts_with("flaky") && ctx.tries() == 1 {
        return Err(HandlerError::retry("mail server busy, try again"));
    }
    Ok(Receipt {
        message_id: format!("<{}@test>", ctx.id()),
        to: email.to,
        tries: ctx.tries(),
    })
}

/// Takes every other task type on the EMAIL queue.
#[task_handler("", queue = "EMAIL")]
pub async fn other_email(
    ctx: &TaskContext,
    _: serde::de::IgnoredAny,
) -> Result<String, HandlerError> {
    Ok(format!("no specific handler for {}", ctx.task_type()))
}

/// Numbers to factor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// The number.
    pub n: u64,
    /// Fail with an I/O error on tries before this one.
    pub fail_until_try: i64,
}

/// Prime factors of `n`, on the DEFAULT queue; the context comes second and
/// by reference, errors are `std::io::Error`.
#[task_handler("math:factor")]
pub async fn factor(job: Factor, ctx: &TaskContext) -> Result<Vec<u64>, std::io::Error> {
    if ctx.tries() < job.fail_until_try {
        return Err(std::io::Error::other(format!(
            "try {} fails on purpose",
            ctx.tries()
        )));
    }
    Ok(prime_factors(job.n))
}

/// Sums numbers; no context; boxed errors.
#[task_handler("math:sum", max_tries = 1, priority = 4)]
pub async fn sum(numbers: Vec<i64>) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    numbers
        .iter()
        .try_fold(0i64, |acc, n| acc.checked_add(*n))
        .ok_or_else(|| "sum overflows i64".into())
}

/// Prime factors, smallest first.
pub fn prime_factors(mut n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut d = 2;
    while n > 1 && d * d <= n {
        while n.is_multiple_of(d) {
            out.push(d);
            n /= d;
        }
        d += 1;
    }
    if n > 1 {
        out.push(n);
    }
    out
}
