//! Every supported handler shape, with all warnings denied so generated
//! code must be warning-free and documented.
#![deny(warnings, missing_docs)]

use asyncjobs::{task_handler, HandlerError, HandlerResult, State, TaskContext};
use serde::{Deserialize, Serialize};

/// A payload.
#[derive(Serialize, Deserialize)]
pub struct Email {
    /// Recipient.
    pub to: String,
}

/// A result.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Receipt {
    /// Message id.
    pub id: String,
}

/// Context first, by value; every option.
#[task_handler("email:new", queue = "EMAIL", max_tries = 5, deadline = "1h30m")]
pub async fn send(ctx: TaskContext, email: Email) -> Result<Receipt, HandlerError> {
    Ok(Receipt {
        id: format!("{}:{}", ctx.id(), email.to),
    })
}

/// Context second, by reference; a destructuring pattern; an io::Result alias.
#[task_handler("email:bounce")]
pub async fn bounce(Email { to }: Email, ctx: &TaskContext) -> std::io::Result<String> {
    Ok(format!("{to} on try {}", ctx.tries()))
}

/// No context; boxed errors; a private handler.
#[task_handler("math:sum", max_tries = 0)]
async fn sum(numbers: Vec<i64>) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    Ok(numbers.iter().sum())
}

/// A fully qualified result type and a unit result.
#[task_handler("noop")]
pub(crate) async fn noop(_: ()) -> ::std::result::Result<(), std::convert::Infallible> {
    Ok(())
}

/// The raw handler result type.
#[task_handler("raw")]
pub async fn raw(ctx: asyncjobs::TaskContext, _: serde::de::IgnoredAny) -> HandlerResult {
    asyncjobs::handler::to_output(&ctx.task_type())
}

/// The catch-all of a queue, with a custom error type.
#[task_handler("", queue = "EMAIL")]
pub async fn anything(_: serde::de::IgnoredAny) -> Result<u8, MyError> {
    Err(MyError)
}

/// A raw identifier as the function name.
#[task_handler("keyword")]
pub async fn r#type(n: u8) -> Result<u8, HandlerError> {
    Ok(n)
}

/// An error type.
#[derive(Debug)]
pub struct MyError;

impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}

impl std::error::Error for MyError {}

/// Handlers in a nested module referring to types of their module.
pub mod nested {
    use super::Receipt;

    /// A payload in this module.
    #[derive(serde::Deserialize)]
    pub struct Payload {
        /// A value.
        pub value: u32,
    }

    /// A payload type named like the generated alias.
    #[task_handler("nested:payload", crate = "::asyncjobs")]
    pub async fn nested(p: Payload) -> Result<Receipt, asyncjobs::HandlerError> {
        Ok(Receipt {
            id: p.value.to_string(),
        })
    }

    use asyncjobs::task_handler;
}

/// Shared state, cheap to clone.
#[derive(Clone)]
pub struct Greeting(pub std::sync::Arc<str>);

/// Shared states in any position (one through a full path), and the
/// settings its queue is created with.
#[task_handler(
    "greet",
    queue = "GREET",
    queue_run_time = "10m",
    queue_max_tries = 0,
    queue_concurrency = 5,
    timeout = "2m30s",
    cron = " TZ=UTC 0 3 * * MON-FRI ",
)]
pub async fn greet(
    State(greeting): State<Greeting>,
    ctx: &TaskContext,
    name: String,
    asyncjobs::State(times): asyncjobs::State<u32>,
) -> Result<String, HandlerError> {
    Ok(format!("{} {name} x{times} on try {}", greeting.0, ctx.tries()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // a module inside a function body is module level for the macro
    mod in_fn {
        #[asyncjobs::task_handler("in_fn")]
        pub async fn in_fn(n: u8) -> Result<u8, asyncjobs::HandlerError> {
            Ok(n)
        }
    }
    assert_eq!(in_fn::in_fn::TASK_TYPE, "in_fn");

    // the functions are unchanged and callable
    let task = asyncjobs::Task::new("email:new", &1).unwrap();
    let ctx = TaskContext::detached(task.clone());
    let receipt = send(ctx.clone(), Email { to: "a".into() }).await.unwrap();
    assert_eq!(receipt.id, format!("{}:a", task.id));
    assert_eq!(sum(vec![1, 2]).await.unwrap(), 3);
    assert_eq!(r#type(7).await.unwrap(), 7);
    noop(()).await.unwrap();

    // the generated modules
    assert_eq!(send::TASK_TYPE, "email:new");
    assert_eq!(send::QUEUE, "EMAIL");
    assert_eq!(send::DEADLINE, Some(std::time::Duration::from_secs(5400)));
    assert_eq!(send::TIMEOUT, None);
    assert_eq!(greet::TIMEOUT, Some(std::time::Duration::from_secs(150)));
    assert_eq!(bounce::QUEUE, "DEFAULT");
    assert_eq!(sum::MAX_TRIES, Some(0));
    assert_eq!(anything::TASK_TYPE, "");
    assert_eq!(r#type::TASK_TYPE, "keyword");
    let _: Option<bounce::Output> = Some(String::new());
    let _: Option<nested::nested::Payload> = Some(nested::Payload { value: 1 });
    assert_eq!(sum::task(&vec![1]).build().unwrap().max_tries, 0);
    assert_eq!(bounce::task(&Email { to: "b".into() }).build().unwrap().max_tries, 10);

    // all of them are registered, and explicitly registrable
    let handlers = asyncjobs::Handlers::registered();
    assert_eq!(handlers.len(), 10);
    handlers.check().unwrap();
    let router = asyncjobs::Router::new()
        .register(send::HANDLER)
        .unwrap()
        .register(anything::HANDLER)
        .unwrap();
    assert_eq!(router.route_for("email:other"), Some(""));
    let task = asyncjobs::Task::new("raw", &1).unwrap();
    let output = asyncjobs::Handlers::new()
        .with(raw::HANDLER)
        .router("DEFAULT")
        .unwrap()
        .dispatch(TaskContext::detached(task.clone()), task)
        .await
        .unwrap();
    assert_eq!(output.get(), "\"raw\"");
    drop(ctx);

    // states: named by the handler, required at registration, cloned per task
    assert_eq!(greet::HANDLER.state_types(), vec!["Greeting", "u32"]);
    let err = asyncjobs::Router::new()
        .with_state(7_u32)
        .register(greet::HANDLER)
        .unwrap_err()
        .to_string();
    assert!(err.contains("::greet (task type \"greet\"") && err.contains("::Greeting>"), "{err}");
    let router = asyncjobs::Router::new()
        .with_state(Greeting("hello".into()))
        .with_state(3_u32)
        .register(greet::HANDLER)
        .unwrap();
    assert_eq!(router.timeout_for("greet"), Some(std::time::Duration::from_secs(150)));
    // cron = "…": trimmed; a String payload does not decode from the null of scheduled tasks
    assert_eq!(greet::CRON, Some("TZ=UTC 0 3 * * MON-FRI"));
    assert_eq!(greet::HANDLER.cron(), greet::CRON);
    assert_eq!(send::CRON, None);
    let err = greet::HANDLER.declared_schedule().unwrap().unwrap_err().to_string();
    assert!(err.contains("does not decode from null") && err.contains("main!(schedule"), "{err}");
    let task = greet::task(&"ann".to_string()).build().unwrap();
    let output = router
        .dispatch(TaskContext::detached(task.clone()), task)
        .await
        .unwrap();
    assert_eq!(output.get(), "\"hello ann x3 on try 1\"");

    // the queue settings, applied to the queue main! creates
    let queue = handlers.queue("GREET").unwrap();
    assert_eq!(queue.max_run_time, std::time::Duration::from_secs(600));
    assert_eq!(queue.max_tries, 0);
    assert_eq!(queue.max_concurrent, 5);
}
