//! The errors a command ends with; `main` prints them and exits 1.

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The NATS context file does not exist (and no `--server` was given).
    UnknownContext(String),
    /// Anything else, with the message to print.
    Message(String),
}

/// Result of a command.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    /// An error with this message.
    pub fn msg(m: impl Into<String>) -> CliError {
        CliError::Message(m.into())
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::UnknownContext(name) => write!(f, "unknown context {name:?}"),
            CliError::Message(m) => f.write_str(m),
        }
    }
}

impl From<asyncjobs::Error> for CliError {
    /// The library's message; a configuration error is the user's input,
    /// shown without the library's "invalid configuration:" prefix.
    fn from(e: asyncjobs::Error) -> CliError {
        use asyncjobs::Error as E;
        CliError::Message(match e {
            E::Config(s) => s,
            E::StorageNotReady(reason)
                if reason.contains("task store") || reason.contains(asyncjobs::TASKS_STREAM) =>
            {
                format!(
                    "storage not ready: {reason} (create it with 'ajc task initialize' or by adding a task)"
                )
            }
            other => other.to_string(),
        })
    }
}

impl From<asyncjobs::ScheduleError> for CliError {
    fn from(e: asyncjobs::ScheduleError) -> CliError {
        match e {
            asyncjobs::ScheduleError::Client(c) => c.into(),
            other => CliError::Message(other.to_string()),
        }
    }
}
