use asyncjobs::{task_handler, Client, HandlerError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct NewEmail {
    to: String,
}

#[derive(Serialize, Deserialize)]
struct Invoice {
    number: u64,
}

#[task_handler("email:new")]
async fn send_email(email: NewEmail) -> Result<String, HandlerError> {
    Ok(email.to)
}

async fn produce(client: &Client) -> asyncjobs::Result<()> {
    send_email::enqueue(client, Invoice { number: 1 }).await?;
    let handle = send_email::enqueue(client, NewEmail { to: "a".into() }).await?;
    let _: Option<u64> = handle.result(client).await?;
    Ok(())
}

#[derive(Deserialize)]
struct DecodeOnly {
    n: u8,
}

// a payload that is only Deserialize makes a handler, but cannot be enqueued
#[task_handler("decode:only")]
async fn decode_only(p: DecodeOnly) -> Result<u8, HandlerError> {
    Ok(p.n)
}

async fn enqueue_decode_only(client: &Client) {
    let _ = decode_only::enqueue(client, DecodeOnly { n: 1 }).await;
}

#[task_handler("")]
async fn catch_all(_: serde::de::IgnoredAny) -> Result<(), HandlerError> {
    Ok(())
}

async fn catch_all_has_no_enqueue(client: &Client) {
    let _ = catch_all::enqueue(client, serde::de::IgnoredAny).await;
}

fn main() {
    let _ = produce;
    let _ = catch_all_has_no_enqueue;
    let _ = enqueue_decode_only;
}
