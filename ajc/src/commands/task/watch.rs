//! `ajc task watch`: lifecycle events as the Go tool prints them, or as
//! lines of JSON.

use super::show::state_style;
use crate::commands::{emitln, Ctx};
use crate::error::{CliError, Result};
use crate::ui::Ui;
use clap::Args;
use futures::StreamExt;
use std::time::Duration;

/// `ajc task watch`.
#[derive(Args, Debug)]
pub struct TaskWatchArgs {
    /// Watch for updates related to a specific task ID
    #[arg(long, value_name = "ID")]
    pub task: Option<String>,
    /// Print each event as a line of JSON
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// One event as the Go `task watch` prints it.
pub fn event_line(ui: &Ui, data: &[u8]) -> String {
    use asyncjobs::events::{parse_event, Event};
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }
    let kind = match serde_json::from_slice::<Probe>(data) {
        Ok(p) => p.kind.unwrap_or_default(),
        Err(e) => return format!("Could not parse event: {e}"),
    };
    match parse_event(data) {
        Ok(Event::TaskState(e)) => {
            let state = match state_style(e.state) {
                Some(s) => ui.paint(s, e.state.as_str()),
                None => e.state.to_string(),
            };
            let mut line = format!(
                "[{}] {}: queue: {} type: {} tries: {} state: {}",
                crate::format::clock(e.timestamp),
                e.task_id,
                e.queue,
                e.task_type,
                e.tries,
                state
            );
            if !e.last_error.is_empty() {
                line.push_str(&format!(" error: {}", e.last_error));
            }
            line
        }
        Ok(Event::LeaderElected(e)) => format!(
            "[{}] {}: new {} leader",
            crate::format::clock(e.timestamp),
            e.name,
            e.component
        ),
        Err(_)
            if kind != asyncjobs::events::TASK_STATE_EVENT_TYPE
                && kind != asyncjobs::events::LEADER_ELECTED_EVENT_TYPE =>
        {
            format!(
                "[{}] Unknown event type {kind}",
                crate::format::clock(time::OffsetDateTime::now_utc())
            )
        }
        Err(e) => format!("Could not parse event: {e}"),
    }
}

/// `task watch`: prints events until an hour passes without one. What the
/// server does meanwhile (a restart, a subscription it ends) is logged on
/// stderr and followed through (`asyncjobs::events::follow`).
pub async fn run(ctx: &Ctx, a: &TaskWatchArgs) -> Result<()> {
    // events are core NATS subjects: the JetStream API plays no part
    let (nc, _) = crate::connect::nats(&ctx.global).await?;
    let mut events = asyncjobs::events::follow(&nc, a.task.as_deref())
        .await
        .map_err(|e| CliError::msg(format!("subscribing to events failed: {e}")))?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(3600), events.next())
            .await
            .map_err(|_| CliError::msg("no events received for 1h0m0s"))?
            .ok_or_else(|| CliError::msg("the event subscription was closed"))?;
        if a.json {
            emitln(String::from_utf8_lossy(&msg.payload).trim());
        } else {
            emitln(event_line(&ctx.ui, &msg.payload));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        let ui = Ui {
            stdout_tty: false,
            stderr_tty: false,
            stdin_tty: false,
            color: false,
        };
        let line = event_line(
            &ui,
            br#"{"event_id":"24mHmiRY9eQCVU4xuHwsztJ2MJH","type":"io.choria.asyncjobs.v1.task_state","timestamp":"2022-02-07T10:16:42Z","task_id":"T1","state":"retry","tries":1,"queue":"DEFAULT","task_type":"email:new","last_error":"boom"}"#,
        );
        assert_eq!(
            line,
            "[10:16:42] T1: queue: DEFAULT type: email:new tries: 1 state: retry error: boom"
        );
        let line = event_line(
            &ui,
            br#"{"type":"io.choria.asyncjobs.v1.leader_elected","timestamp":"2022-02-07T10:16:42Z","name":"s1","component":"task_scheduler"}"#,
        );
        assert_eq!(line, "[10:16:42] s1: new task_scheduler leader");
        assert!(event_line(&ui, br#"{"type":"x.y"}"#).ends_with("Unknown event type x.y"));
        assert!(event_line(&ui, b"nope").starts_with("Could not parse event:"));
    }
}
