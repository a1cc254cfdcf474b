//! A private handler whose payload, result and error types are private: the
//! generated items are private too (no `private type in public interface`),
//! usable where the function is, and warning-free.
#![deny(warnings)]

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Order {
    id: u32,
}

#[derive(Serialize, Deserialize)]
struct Shipped {
    id: u32,
}

#[derive(Debug)]
struct ShipError;

impl std::fmt::Display for ShipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ship error")
    }
}

impl std::error::Error for ShipError {}

#[asyncjobs::task_handler("order:ship", queue = "ORDERS")]
async fn ship(order: Order) -> Result<Shipped, ShipError> {
    Ok(Shipped { id: order.id })
}

fn main() {
    // the typed helpers are usable where the function is
    let task = ship::task(&Order { id: 7 }).build().unwrap();
    assert_eq!(task.task_type, ship::TASK_TYPE);
    let _: ship::Payload = Order { id: 1 };
    let _: Option<ship::Output> = None;
    let _ = ship::enqueue;
    let _ = ship::TYPED;
    assert_eq!(ship::HANDLER.task_type(), "order:ship");
    assert_eq!(asyncjobs::Handlers::registered().len(), 1);
}
