//! Handlers and task types shared by the example programs: the email worker
//! (`src/bin/email-worker.rs`) runs them, the producer
//! (`src/bin/email-producer.rs`) enqueues typed tasks for them, the timed
//! worker (`src/bin/timed-worker.rs`) runs them with the middleware of
//! [`timing`].

pub mod email;
pub mod timing;
