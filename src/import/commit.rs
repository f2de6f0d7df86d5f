//! Commits parsed chunks, in file order, to each workspace's tables. Every
//! commit records `txn(app_id, last line)`, so a re-import or a resumed
//! import skips what is already stored (DESIGN.md "Idempotent writes").

use std::collections::HashMap;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use deltalake_core::DeltaTable;

use super::chunk::ParsedChunk;
use crate::event::EventBatchBuilder;
use crate::store::quarantine::{Rejected, quarantine_batch};
use crate::store::{Store, StoreError, TableKind, table};

/// What committing one chunk did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOutcome {
    /// Events newly stored.
    pub stored: u64,
    /// Events already stored by an earlier import of the same file.
    pub skipped: u64,
    /// Rejected lines newly kept in quarantine.
    pub quarantined: u64,
}

/// A table and how far this import's application id has committed to it.
struct Progress {
    table: DeltaTable,
    committed: i64,
}

/// Writes one file's chunks; `app_id` names the file by its content hash.
pub struct Committer {
    store: Store,
    app_id: String,
    /// Workspace whose quarantine keeps rejected lines, if any.
    quarantine: Option<String>,
    tables: HashMap<(String, TableKind), Progress>,
    seq: SeqClock,
}

impl Committer {
    pub fn new(store: Store, app_id: String, quarantine: Option<String>) -> Committer {
        Committer {
            store,
            app_id,
            quarantine,
            tables: HashMap::new(),
            seq: SeqClock::default(),
        }
    }

    /// Stores the chunk's events and rejects that are not stored yet.
    pub async fn commit(&mut self, chunk: ParsedChunk) -> Result<ChunkOutcome, StoreError> {
        let mut outcome = ChunkOutcome::default();
        let last_line = chunk.last_line as i64;
        for (workspace, events) in chunk.events {
            let count = events.len() as u64;
            let seq = self.seq.reserve(events.len());
            let stored = self
                .append(&workspace, TableKind::Events, last_line, |committed| {
                    events_after(events, committed, seq)
                })
                .await?;
            outcome.stored += stored;
            outcome.skipped += count - stored;
        }
        if let Some(workspace) = self.quarantine.clone()
            && !chunk.rejected.is_empty()
        {
            let received_at = crate::event::now_micros();
            let rejected = chunk.rejected;
            outcome.quarantined = self
                .append(&workspace, TableKind::Quarantine, last_line, |committed| {
                    let fresh: Vec<&Rejected> = rejected
                        .iter()
                        .filter(|r| r.line as i64 > committed)
                        .collect();
                    quarantine_batch(&fresh, received_at)
                })
                .await?;
        }
        Ok(outcome)
    }

    /// Appends the rows `build(committed)` returns, recording `last_line`;
    /// returns how many rows were stored (0 when already committed).
    async fn append(
        &mut self,
        workspace: &str,
        kind: TableKind,
        last_line: i64,
        build: impl FnOnce(i64) -> RecordBatch,
    ) -> Result<u64, StoreError> {
        let app_id = self.app_id.clone();
        let progress = self.progress(workspace, kind).await?;
        if last_line <= progress.committed {
            return Ok(0);
        }
        let batch = build(progress.committed);
        let rows = batch.num_rows() as u64;
        match table::append(&mut progress.table, vec![batch], Some((&app_id, last_line))).await {
            Ok(_) => {
                progress.committed = last_line;
                Ok(rows)
            }
            Err(e) => {
                // A concurrent import of the same file may have committed it.
                table::refresh(&mut progress.table).await?;
                progress.committed = committed_lines(&progress.table, &app_id).await?;
                if last_line <= progress.committed {
                    Ok(0)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn progress(
        &mut self,
        workspace: &str,
        kind: TableKind,
    ) -> Result<&mut Progress, StoreError> {
        let key = (workspace.to_string(), kind);
        if !self.tables.contains_key(&key) {
            let table = self.store.open_or_create(workspace, kind).await?;
            let committed = committed_lines(&table, &self.app_id).await?;
            self.tables
                .insert(key.clone(), Progress { table, committed });
        }
        Ok(self.tables.get_mut(&key).expect("inserted above"))
    }
}

async fn committed_lines(table: &DeltaTable, app_id: &str) -> Result<i64, StoreError> {
    Ok(table::app_progress(table, app_id).await?.unwrap_or(0))
}

/// The batch of events read after line `committed`.
fn events_after(events: EventBatchBuilder, committed: i64, first_seq: i64) -> RecordBatch {
    let keep: BooleanArray = events
        .lines()
        .iter()
        .map(|l| Some(*l as i64 > committed))
        .collect();
    let all_new = keep.true_count() == keep.len();
    let batch = events.finish(first_seq);
    if all_new {
        return batch;
    }
    filter_record_batch(&batch, &keep).expect("the mask has one entry per row")
}

/// Hands out `seq` values: nanoseconds since the epoch, strictly increasing
/// within a writer, so `seq` follows ingest order (SPEC §5).
#[derive(Debug, Default)]
pub struct SeqClock {
    last: i64,
}

impl SeqClock {
    /// Reserves `n` consecutive values and returns the first.
    pub fn reserve(&mut self, n: usize) -> i64 {
        let now = chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or(i64::MAX / 2);
        let first = now.max(self.last + 1);
        self.last = first + n as i64 - 1;
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_grows_across_reservations() {
        let mut clock = SeqClock::default();
        let a = clock.reserve(1_000_000);
        let b = clock.reserve(1);
        assert!(b >= a + 1_000_000);
    }
}
