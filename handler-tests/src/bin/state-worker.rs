//! A worker built with `asyncjobs::main!`'s options: two shared states (one
//! made by an `async` expression) and two middleware. `tests/programs.rs`
//! runs it against a real nats-server.

use asyncjobs::router::{from_fn, Next};
use asyncjobs::{Task, TaskContext};

mod jobs {
    use asyncjobs::{task_handler, HandlerError, State};
    use std::sync::Arc;

    /// A greeting shared by every task.
    #[derive(Clone)]
    pub struct Greeting(pub Arc<str>);

    /// How many times to greet.
    #[derive(Clone, Copy)]
    pub struct Times(pub u32);

    /// Greets `name` with the shared greeting, `Times` times.
    #[task_handler(
        "greet",
        queue = "GREETINGS",
        queue_run_time = "2m",
        queue_max_tries = 7
    )]
    pub async fn greet(
        State(greeting): State<Greeting>,
        name: String,
        State(Times(times)): State<Times>,
    ) -> Result<String, HandlerError> {
        Ok(vec![format!("{} {name}", greeting.0); times as usize].join(", "))
    }
}

/// Wraps the result's JSON in `label(...)`, so the order of middleware shows.
fn wrap(
    label: &'static str,
) -> impl Fn(asyncjobs::handler::BoxHandler) -> asyncjobs::handler::BoxHandler + Send + Sync {
    from_fn(move |ctx: TaskContext, task: Task, next: Next| async move {
        let output = next.run(ctx, task).await?;
        asyncjobs::handler::to_output(&format!("{label}({})", output.get()))
    })
}

async fn times() -> jobs::Times {
    jobs::Times(2)
}

asyncjobs::main!(
    state = jobs::Greeting("hello".into()),
    state = times().await,
    middleware = wrap("outer"),
    middleware = wrap("inner"),
);
