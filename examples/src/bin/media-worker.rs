//! A worker with handlers on two queues: `IMAGES` and `REPORTS` each get
//! their own processor (and concurrency) in the one process.
//!
//! ```sh
//! cargo run -p asyncjobs-examples --bin media-worker -- --list-handlers
//! cargo run -p asyncjobs-examples --bin media-worker -- --concurrency 4 --metrics-port 9090
//! cargo run -p asyncjobs-examples --bin media-worker -- --queue REPORTS   # only one queue
//! ```

use asyncjobs::{task_handler, HandlerError, TaskContext};
use serde::{Deserialize, Serialize};

/// An image to resize.
#[derive(Debug, Serialize, Deserialize)]
pub struct Resize {
    /// Where the image is.
    pub url: String,
    /// Target width in pixels.
    pub width: u32,
}

/// Where the resized image went.
#[derive(Debug, Serialize, Deserialize)]
pub struct Resized {
    /// The new image.
    pub url: String,
}

/// Resizes an image; a zero width can never work, so it terminates.
#[task_handler("image:resize", queue = "IMAGES", max_tries = 3)]
pub async fn resize(job: Resize) -> Result<Resized, HandlerError> {
    if job.width == 0 {
        return Err(asyncjobs::terminate("width must be positive"));
    }
    Ok(Resized {
        url: format!("{}?w={}", job.url, job.width),
    })
}

/// A report to build.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// Report name.
    pub name: String,
    /// Rows to include.
    pub rows: u64,
}

/// Builds a report, telling JetStream it is still working on big ones.
#[task_handler("report:build", queue = "REPORTS", deadline = "6h")]
pub async fn build_report(ctx: TaskContext, report: Report) -> Result<String, HandlerError> {
    if report.rows > 1_000_000 {
        ctx.mark_in_progress().await?;
    }
    Ok(format!("{} with {} rows", report.name, report.rows))
}

asyncjobs::main!();
