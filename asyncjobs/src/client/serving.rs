//! Whether anything serves a queue, and a task type on it, as far as the
//! cluster can tell (docs/processing.md §2.15): the one owner of that
//! judgement, used by `ajc task add`, the HTTP API's enqueue and the
//! dashboard.

use super::Client;
use crate::error::Result;

/// What the cluster tells of the workers of a queue (see
/// [`Client::serving`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Serving {
    /// A worker serves it: an announcing worker of the queue handles the
    /// type, or the queue's `WORKERS` consumer has pull requests waiting
    /// or items in flight from a worker that does not announce itself
    /// (Go's).
    Served,
    /// Nothing can be told: the server is too old for worker presence and
    /// a task type was asked about while the queue's consumer is pulled.
    Unknown,
    /// No worker serves the queue: none announces itself for it, and its
    /// consumer has no pull request waiting and no item in flight (an idle
    /// worker, Go's or ours, always keeps a pull request waiting).
    NoWorker {
        /// The queue.
        queue: String,
    },
    /// Workers of the queue announce themselves but none handles the task
    /// type, and the consumer's waiting pull requests are no more than
    /// theirs (no other worker is seen).
    NoHandler {
        /// The queue.
        queue: String,
        /// The task type.
        task_type: String,
        /// The types the queue's announcing workers handle.
        handled: Vec<String>,
    },
}

impl Serving {
    /// The judgement [`Client::serving`] makes, from what it read: the
    /// queue's state, whether the server keeps worker presence, and the
    /// workers announcing themselves (those of other queues are ignored).
    pub fn judge(
        info: &crate::QueueInfo,
        presence: bool,
        workers: &[crate::worker::presence::WorkerPresence],
        task_type: Option<&str>,
    ) -> Serving {
        let queue = info.queue.name.as_str();
        let announced: Vec<_> = workers.iter().filter(|w| w.queue == queue).collect();
        let pulled = info.has_consumer && (info.waiting > 0 || info.ack_pending > 0);
        if announced.is_empty() {
            return match (pulled, presence, task_type) {
                (false, _, _) => Serving::NoWorker {
                    queue: queue.to_string(),
                },
                (true, false, Some(_)) => Serving::Unknown,
                (true, _, _) => Serving::Served,
            };
        }
        let Some(task_type) = task_type else {
            return Serving::Served;
        };
        if announced.iter().any(|w| handles(&w.task_types, task_type)) {
            return Serving::Served;
        }
        // a Rust worker keeps at most MAX_PULLS requests waiting: more are
        // another worker's (one that does not announce itself)
        if Serving::unannounced_pulls(info, workers) > 0 {
            return Serving::Served;
        }
        let mut handled: Vec<String> = announced
            .iter()
            .flat_map(|w| w.task_types.iter().cloned())
            .collect();
        handled.sort();
        handled.dedup();
        Serving::NoHandler {
            queue: queue.to_string(),
            task_type: task_type.to_string(),
            handled,
        }
    }

    /// How many of the queue's waiting pull requests belong to workers
    /// that do not announce themselves (Go's, or any on a server too old
    /// for worker presence): those beyond what its announcing workers keep
    /// (at most a few each). A lower bound: an idle unannounced worker
    /// among busy announced ones may go unseen.
    pub fn unannounced_pulls(
        info: &crate::QueueInfo,
        workers: &[crate::worker::presence::WorkerPresence],
    ) -> u64 {
        let announced = workers
            .iter()
            .filter(|w| w.queue == info.queue.name)
            .count();
        info.waiting
            .saturating_sub((announced * crate::worker::dispatch::MAX_PULLS) as u64)
    }

    /// What to tell the user when nothing serves the queue or the type:
    /// which one and what to do; `None` when served or unknown.
    pub fn warning(&self) -> Option<String> {
        match self {
            Serving::Served | Serving::Unknown => None,
            Serving::NoWorker { queue } => Some(format!(
                "no running worker serves queue {queue}: the task waits there until a worker for queue {queue} starts (start one with a handler for its type on queue {queue}, or enqueue into the queue your workers process)"
            )),
            Serving::NoHandler {
                queue,
                task_type,
                handled,
            } => Some(format!(
                "no running worker handles task type {task_type} on queue {queue} (its workers handle {}): the task waits until one does (start a worker with a handler for {task_type} on queue {queue})",
                if handled.is_empty() {
                    "no type".to_string()
                } else {
                    handled.join(", ")
                }
            )),
        }
    }
}

/// Whether a worker handling `types` runs tasks of `task_type`: a type it
/// registered, or a registered prefix of it (the catch-all `""` included),
/// as the router routes (docs/processing.md §6.1).
pub(crate) fn handles(types: &[String], task_type: &str) -> bool {
    types.iter().any(|t| task_type.starts_with(t.as_str()))
}

impl Client {
    /// What the server supports of this crate's features, as learnt when
    /// this client was built ([`crate::capabilities`]).
    pub fn capabilities(&self) -> crate::capabilities::Capabilities {
        self.inner.storage.capabilities()
    }

    /// Whether a running worker serves `queue` and, given `task_type`,
    /// handles that type there, as far as the cluster can tell: from the
    /// workers that announce themselves ([`Client::workers`]) and the
    /// state of the queue's `WORKERS` consumer (waiting pull requests,
    /// items in flight). Nothing is changed; [`Serving::warning`] words
    /// the answer.
    ///
    /// # Errors
    /// Reading the queue or the workers failed.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = asyncjobs::Client::connect("nats://127.0.0.1:4222").await?;
    /// let served = client.serving("DEFAULT", Some("image:resize")).await?;
    /// if let Some(w) = served.warning() {
    ///     eprintln!("warning: {w}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn serving(&self, queue: &str, task_type: Option<&str>) -> Result<Serving> {
        let info = self.queue_info(queue).await?;
        let presence = self.capabilities().presence;
        let workers = if presence {
            self.workers().await?
        } else {
            vec![]
        };
        Ok(Serving::judge(&info, presence, &workers, task_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_handled_as_the_router_routes() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(handles(&t(&["image:resize"]), "image:resize"));
        assert!(handles(&t(&["image:"]), "image:resize"));
        assert!(handles(&t(&[""]), "anything"));
        assert!(!handles(&t(&["email:new"]), "image:resize"));
        assert!(!handles(&[], "image:resize"));
    }

    #[test]
    fn warnings_name_the_queue_the_type_and_what_to_do() {
        let w = Serving::NoWorker {
            queue: "DEFAULT".into(),
        }
        .warning()
        .unwrap();
        assert!(
            w.starts_with("no running worker serves queue DEFAULT"),
            "{w}"
        );
        let w = Serving::NoHandler {
            queue: "DEFAULT".into(),
            task_type: "image:resize".into(),
            handled: vec!["email:new".into()],
        }
        .warning()
        .unwrap();
        assert!(
            w.contains("no running worker handles task type image:resize on queue DEFAULT (its workers handle email:new)")
                && w.contains("start a worker with a handler for image:resize on queue DEFAULT"),
            "{w}"
        );
        assert_eq!(Serving::Served.warning(), None);
    }
}
