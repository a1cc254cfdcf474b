//! A `pub` handler with `pub` types in a `pub` module: the generated items
//! are `pub` and documented (`missing_docs` is denied).
#![deny(warnings, missing_docs)]

/// Public handlers.
pub mod api {
    use serde::{Deserialize, Serialize};

    /// A payload.
    #[derive(Serialize, Deserialize)]
    pub struct Ping {
        /// A value.
        pub n: u8,
    }

    /// A result.
    #[derive(Serialize, Deserialize)]
    pub struct Pong {
        /// The value.
        pub n: u8,
    }

    /// Answers a ping.
    #[asyncjobs::task_handler("ping")]
    pub async fn ping(p: Ping) -> Result<Pong, asyncjobs::HandlerError> {
        Ok(Pong { n: p.n })
    }
}

fn main() {
    let task = api::ping::task(&api::Ping { n: 1 }).build().unwrap();
    assert_eq!(task.task_type, "ping");
    let _: api::ping::Output = api::Pong { n: 2 };
    let _ = api::ping::enqueue;
    assert_eq!(asyncjobs::Handlers::registered().len(), 1);
}
