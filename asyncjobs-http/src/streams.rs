//! Reading and writing the streams this crate keeps (`CHORIA_AJ_AUDIT`,
//! `CHORIA_AJ_STATS`, `CHORIA_AJ_HISTORY`): a stream that does not exist
//! yet is no error, only nothing to read, and a write to it creates it.

use async_nats::jetstream;
use futures::StreamExt;
use std::time::Duration;

/// The stream `name`, `None` when it does not exist.
///
/// Errors: it cannot be looked up (the message names it).
pub(crate) async fn existing(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<jetstream::stream::Stream>, String> {
    match js.get_stream(name).await {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!("reading the stream {name}: {e}")),
    }
}

/// Every message `config` selects from `stream` now, in order, through an
/// ordered consumer (none waited for when there are none).
///
/// Errors: the consumer cannot be made or read.
pub(crate) async fn read_all(
    stream: &jetstream::stream::Stream,
    config: jetstream::consumer::pull::OrderedConfig,
) -> Result<Vec<jetstream::Message>, String> {
    let name = stream.cached_info().config.name.clone();
    let fail = |e: &dyn std::fmt::Display| format!("reading the stream {name}: {e}");
    let mut consumer = stream.create_consumer(config).await.map_err(|e| fail(&e))?;
    let mut out = vec![];
    if consumer.info().await.map_err(|e| fail(&e))?.num_pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await.map_err(|e| fail(&e))?;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
        let m = m.map_err(|e| fail(&e))?;
        let pending = m.info().map(|i| i.pending).unwrap_or(0);
        out.push(m);
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}

/// Why [`publish_creating`] stored nothing.
#[derive(Debug)]
pub(crate) enum NotStored {
    /// The server refused the message (for example a header's
    /// expectation not met: see [`jetstream::context::PublishErrorKind`]).
    Refused(jetstream::context::PublishError),
    /// No stream held the subject and creating it failed.
    NoStream(String),
}

impl std::fmt::Display for NotStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotStored::Refused(e) => e.fmt(f),
            NotStored::NoStream(e) => f.write_str(e),
        }
    }
}

/// Publishes `body` (with `headers`) on `subject` and waits for the
/// server's acknowledgement; when no stream holds the subject yet, makes
/// it with `create` (which leaves an existing one as it is) and publishes
/// once more.
///
/// Errors: [`NotStored`].
pub(crate) async fn publish_creating<F, Fut>(
    js: &jetstream::Context,
    subject: &str,
    headers: async_nats::HeaderMap,
    body: Vec<u8>,
    create: F,
) -> Result<(), NotStored>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut create = Some(create);
    loop {
        let sent = async {
            js.publish_with_headers(subject.to_string(), headers.clone(), body.clone().into())
                .await?
                .await
        }
        .await;
        match sent {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                match create.take() {
                    Some(create) => create().await.map_err(NotStored::NoStream)?,
                    None => return Err(NotStored::Refused(e)),
                }
            }
            Err(e) => return Err(NotStored::Refused(e)),
        }
    }
}
