//! The one switch that stops the write-ahead log after an I/O error: the only
//! place that decides whether the writer may still write.

use super::error::WalError;

/// Tripped by the first failed write or fsync; after that the writer writes
/// nothing and answers every append and seal with [`WalError::Failed`].
///
/// Why not retry: after a failed fsync the kernel may have dropped the dirty
/// pages and marked them clean, so a retried fsync can succeed for bytes that
/// never reached the disk. Today only a restart clears the latch (recovery
/// cuts the segment after its last whole record). Recovering in-process once
/// a transient error clears means clearing it here, and only after the writer
/// has left the failed segment for a fresh one.
#[derive(Debug, Default)]
pub(super) struct Latch {
    failure: Option<String>,
}

impl Latch {
    /// Stops the log; the first error is the one reported.
    pub(super) fn trip(&mut self, error: WalError) {
        tracing::error!(%error, "write-ahead log failed; refusing appends until a restart");
        self.failure.get_or_insert_with(|| error.to_string());
    }

    pub(super) fn is_tripped(&self) -> bool {
        self.failure.is_some()
    }

    /// What to answer a waiter: `Ok` unless the log stopped.
    pub(super) fn check(&self) -> Result<(), WalError> {
        self.failure
            .clone()
            .map_or(Ok(()), |reason| Err(WalError::Failed(reason)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_stops_the_log_for_good() {
        let mut latch = Latch::default();
        assert!(latch.check().is_ok());
        latch.trip(WalError::Config("first".into()));
        latch.trip(WalError::Config("second".into()));
        assert!(latch.is_tripped());
        let answer = latch.check();
        assert!(
            matches!(&answer, Err(WalError::Failed(r)) if r.ends_with("first")),
            "{answer:?}"
        );
    }
}
