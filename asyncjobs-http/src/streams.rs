//! Reading the streams this crate keeps (`CHORIA_AJ_AUDIT`,
//! `CHORIA_AJ_STATS`, `CHORIA_AJ_HISTORY`): a stream that does not exist
//! yet is no error, only nothing to read.

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
