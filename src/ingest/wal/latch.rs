//! Whether the write-ahead log can write right now: tripped by a failed
//! write, fsync or segment creation, cleared once a fresh segment takes
//! writes again. `/healthz` reads it; the writer alone sets it.
//!
//! Why a fresh segment: after a failed fsync the kernel may have dropped the
//! dirty pages and marked them clean, so a retried fsync on the same file
//! can succeed for bytes that never reached the disk, and every record
//! written after them would sit behind a hole. So the writer never writes to
//! a segment again once a write or an fsync on it failed: it seals it at the
//! length known to be durable (every acknowledged record is before it) and
//! the next append goes to a new segment. Nothing in the failed batch is
//! acknowledged.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::error::WalError;

/// The last I/O failure, while it has not been overcome.
#[derive(Debug, Default)]
pub(super) struct Latch {
    failure: Mutex<Option<String>>,
}

impl Latch {
    fn failure_slot(&self) -> MutexGuard<'_, Option<String>> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a failure; the latest one is the one reported.
    pub(super) fn trip(&self, error: &WalError) {
        let mut slot = self.failure_slot();
        if slot.is_none() {
            tracing::error!(%error, "write-ahead log failed; appends are refused until a fresh segment takes writes");
        }
        *slot = Some(error.to_string());
    }

    /// A fresh segment took writes: the log works again.
    pub(super) fn clear(&self) {
        if self.failure_slot().take().is_some() {
            tracing::info!("write-ahead log recovered: a fresh segment takes writes again");
        }
    }

    pub(super) fn is_tripped(&self) -> bool {
        self.failure_slot().is_some()
    }

    /// Why the log cannot write, while it cannot.
    pub(super) fn failure(&self) -> Option<String> {
        self.failure_slot().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_failure_is_reported_until_cleared() {
        let latch = Latch::default();
        assert_eq!(latch.failure(), None);
        latch.trip(&WalError::Config("first".into()));
        latch.trip(&WalError::Config("second".into()));
        assert!(latch.is_tripped());
        assert!(latch.failure().is_some_and(|r| r.ends_with("second")));
        latch.clear();
        assert!(!latch.is_tripped());
        assert_eq!(latch.failure(), None);
    }
}
