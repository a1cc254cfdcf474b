//! A library of handlers with private payload and result types, built as a
//! library crate (where `pub` items are really exported, unlike the
//! binaries' and the trybuild cases'): the items `#[task_handler]`
//! generates follow each function's visibility, so none leaks a private
//! type (docs/processing.md §6.5). `tests/library.rs` uses what it exports.
//!
//! The binaries of this package do not use this library.
#![deny(missing_docs)]

use asyncjobs::HandlerDef;

/// Handlers private to the library.
mod jobs {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Cleanup {
        older_than_days: u32,
    }

    #[derive(Serialize, Deserialize)]
    struct Cleaned {
        removed: u32,
    }

    #[asyncjobs::task_handler("lib:cleanup", queue = "LIB")]
    async fn cleanup(c: Cleanup) -> Result<Cleaned, asyncjobs::HandlerError> {
        Ok(Cleaned {
            removed: c.older_than_days,
        })
    }

    #[derive(Serialize, Deserialize)]
    pub(crate) struct Reindex {
        pub(crate) shard: u16,
    }

    #[asyncjobs::task_handler("lib:reindex", queue = "LIB")]
    pub(crate) async fn reindex(r: Reindex) -> Result<u16, asyncjobs::HandlerError> {
        Ok(r.shard)
    }

    /// The private handlers, for the crate root.
    pub(super) fn handlers() -> [asyncjobs::HandlerDef; 2] {
        let _ = cleanup::enqueue;
        let _ = cleanup::task(&Cleanup { older_than_days: 1 });
        [cleanup::HANDLER, reindex::HANDLER]
    }
}

/// Handlers the library exports, with public types.
pub mod public {
    use serde::{Deserialize, Serialize};

    /// A payload.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Archive {
        /// What to archive.
        pub path: String,
    }

    /// Archives a path.
    #[asyncjobs::task_handler("lib:archive", queue = "LIB")]
    pub async fn archive(a: Archive) -> Result<String, asyncjobs::HandlerError> {
        Ok(a.path)
    }
}

/// Every handler of the library, private ones included.
pub fn handlers() -> Vec<HandlerDef> {
    let _ = jobs::reindex::task(&jobs::Reindex { shard: 1 });
    let mut all = jobs::handlers().to_vec();
    all.push(public::archive::HANDLER);
    all
}
