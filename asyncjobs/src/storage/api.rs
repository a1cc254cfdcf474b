//! The JetStream API calls whose bodies must match Go's byte for byte
//! (stream and consumer creation and updates, docs/storage.md §3 and §4), made through
//! async-nats's typed request so replies and errors are decoded once.

use crate::error::{nats, NatsError};
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{self, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One `$JS.API.<api>` request: the decoded reply, or the server's
/// refusal as a [`NatsError`] of kind `JetStream` with its error code.
pub(crate) async fn request<T: DeserializeOwned>(
    js: &jetstream::Context,
    api: &str,
    body: &impl Serialize,
    context: impl FnOnce() -> String,
) -> Result<T, NatsError> {
    match js.request::<_, _, Response<T>>(api.to_string(), body).await {
        Ok(Response::Ok(v)) => Ok(v),
        Ok(Response::Err { error }) => Err(NatsError::api(context(), error)),
        Err(e) => Err(nats(context(), e)),
    }
}

/// True when `e` is the server saying `code`.
pub(crate) fn is(e: &NatsError, code: ErrorCode) -> bool {
    e.jetstream_code() == Some(code)
}

/// Whether a delete by sequence failed because the message is gone: the
/// server answers `no message found` as 10037, as 10057 ("message delete
/// failed") when another client deleted it first, or `sequence not found`
/// (10043) once the stream's first sequence has moved past it.
pub(crate) fn is_gone(e: &NatsError) -> bool {
    is(e, ErrorCode::NO_MESSAGE_FOUND)
        || is(e, ErrorCode::SEQUENCE_NOT_FOUND)
        || (is(e, ErrorCode::STREAM_MESSAGE_DELETE_FAILED)
            && e.to_string().contains("no message found"))
}

/// The configuration a `STREAM.INFO.<stream>` or
/// `CONSUMER.INFO.<stream>.<consumer>` reply holds, exactly as the server
/// has it (for updates that must keep every field).
pub(crate) async fn config(
    js: &jetstream::Context,
    api: &str,
    context: impl FnOnce() -> String,
) -> Result<serde_json::Value, NatsError> {
    #[derive(serde::Deserialize)]
    struct Info {
        config: serde_json::Value,
    }
    request::<Info>(js, api, &serde_json::json!({}), context)
        .await
        .map(|i| i.config)
}
