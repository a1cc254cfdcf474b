//! Testing handlers without a NATS server.
//!
//! A `#[task_handler]` function stays a plain `async fn`: call it directly
//! with a context from [`TestTask::context`]. To test what the worker does
//! around it, [`TestWorker`] runs handlers in process the way a worker
//! does: routing by task type, middleware, shared state, payload decoding,
//! result encoding, and the outcome the worker would record: `complete`,
//! `retry`, `terminated` or `expired`.
//!
//! ```
//! mod shop {
//!     use asyncjobs::{task_handler, HandlerError, State, TaskContext};
//!
//!     #[derive(serde::Serialize, serde::Deserialize)]
//!     pub struct Order { pub id: u32, pub total_cents: u64 }
//!
//!     #[derive(Clone)]
//!     pub struct Tax(pub u64);
//!
//!     #[task_handler("order:confirm", queue = "ORDERS", max_tries = 3)]
//!     pub async fn confirm(
//!         ctx: TaskContext,
//!         State(tax): State<Tax>,
//!         order: Order,
//!     ) -> Result<String, HandlerError> {
//!         if order.total_cents == 0 {
//!             return Err(asyncjobs::terminate("an order needs a total"));
//!         }
//!         if ctx.tries() < 2 {
//!             return Err(HandlerError::retry("payment service busy"));
//!         }
//!         Ok(format!("order {} confirmed, {} cents tax", order.id, order.total_cents * tax.0 / 100))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use asyncjobs::testing::{TestTask, TestWorker};
//! use asyncjobs::TaskState;
//!
//! let worker = TestWorker::new()
//!     .state(shop::Tax(20))
//!     .handler(shop::confirm::HANDLER)?;
//!
//! // typed round trip: payload in, tries until a final state, typed result out
//! let order = shop::Order { id: 7, total_cents: 1000 };
//! let confirmed = worker.call(shop::confirm::TYPED, order).await?;
//! assert_eq!(confirmed, "order 7 confirmed, 200 cents tax");
//!
//! // one try, as the worker would record it
//! let first = TestTask::for_handler(shop::confirm::HANDLER)
//!     .payload(&shop::Order { id: 8, total_cents: 500 });
//! let outcome = worker.run(first.clone()).await;
//! assert_eq!(outcome.state(), TaskState::Retry);
//! assert_eq!(outcome.last_err(), "payment service busy");
//! assert_eq!(worker.run(first.tries(2)).await.state(), TaskState::Complete);
//!
//! // a failing last try expires the task; a terminate error ends it at once
//! let last = TestTask::for_handler(shop::confirm::HANDLER)
//!     .payload(&shop::Order { id: 9, total_cents: 500 })
//!     .max_tries(1);
//! assert_eq!(worker.run(last).await.state(), TaskState::Expired);
//! let err = worker.call(shop::confirm::TYPED, shop::Order { id: 10, total_cents: 0 }).await.unwrap_err();
//! assert_eq!((err.state, err.tries), (TaskState::Terminated, 1));
//!
//! // a payload that does not decode terminates, as on a worker
//! let bad = TestTask::new("order:confirm").raw_payload(r#"{"id":"x"}"#);
//! assert_eq!(worker.run(bad).await.state(), TaskState::Terminated);
//! # Ok(()) }
//! ```
//!
//! What is not simulated: JetStream (redelivery timing, acknowledgements,
//! the retry policy's delays: tries follow each other at once), the
//! queue's run time (a handler is never cancelled for taking that long;
//! its own time-out, `timeout = "…"`, is applied) and dependencies.

// one file each: the task of a try (task), how a try ended (outcome), the
// in-process worker (worker)
mod outcome;
mod task;
#[cfg(test)]
mod tests;
mod worker;

pub use outcome::{Failed, Outcome};
pub use task::TestTask;
pub use worker::TestWorker;

use crate::registry::HandlerDef;
use std::fmt;
use std::marker::PhantomData;

/// Tries [`TestWorker::run_to_end`] makes when neither the task nor its
/// queue limits them.
pub const UNLIMITED_TRIES_CAP: i64 = 25;

/// A handler declared with `#[task_handler]` with its payload and result
/// types: `<fn>::TYPED`, for [`TestWorker::call`].
pub struct TypedHandlerDef<P, O> {
    def: HandlerDef,
    _types: PhantomData<fn(P) -> O>,
}

impl<P, O> TypedHandlerDef<P, O> {
    #[doc(hidden)]
    pub const fn __new(def: HandlerDef) -> Self {
        TypedHandlerDef {
            def,
            _types: PhantomData,
        }
    }

    /// The untyped registration (`<fn>::HANDLER`).
    pub fn def(&self) -> HandlerDef {
        self.def
    }
}

impl<P, O> Clone for TypedHandlerDef<P, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P, O> Copy for TypedHandlerDef<P, O> {}

impl<P, O> fmt::Debug for TypedHandlerDef<P, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedHandlerDef")
            .field("def", &self.def)
            .field("payload", &std::any::type_name::<P>())
            .field("output", &std::any::type_name::<O>())
            .finish()
    }
}
