//! The JetStream API calls whose bodies must match Go's byte for byte
//! (stream and consumer creation and updates, reference §1), made through
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
