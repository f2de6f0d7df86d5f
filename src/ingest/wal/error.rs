//! Why an append, a seal or opening the write-ahead log failed.

use std::io;
use std::path::{Path, PathBuf};

use super::format::MAX_RECORD_BYTES;

/// Why an append, a seal or opening the log failed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// `queue` appends are already waiting: answer 503 with Retry-After.
    #[error("the write-ahead log's queue is full")]
    Full,
    /// The log holds `max_bytes` not yet committed: answer 503 with
    /// Retry-After until the flusher catches up.
    #[error(
        "the write-ahead log holds {pending} bytes not yet in the tables, \
         at its limit of {limit} bytes (max_wal_bytes)"
    )]
    Backlog { pending: u64, limit: u64 },
    /// The log was closed; nothing more is accepted.
    #[error("the write-ahead log is closed")]
    Closed,
    /// A write, fsync or segment creation failed: the append was not
    /// stored; the log tries a fresh segment for the next one.
    #[error("the write-ahead log could not write: {0}")]
    Failed(String),
    #[error("a write-ahead log record holds 1 to {MAX_RECORD_BYTES} bytes, not {0}")]
    Record(usize),
    #[error("write-ahead log config: {0}")]
    Config(String),
    #[error("write-ahead log directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("write-ahead log: {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Wraps an I/O error with what was being done to which path.
pub(super) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> WalError + use<> {
    let path = path.to_path_buf();
    move |source| WalError::Io {
        action,
        path,
        source,
    }
}
