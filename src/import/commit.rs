//! Commits parsed chunks, in file order, to each workspace's tables. Every
//! commit records `txn(app_id, last line)`, so a re-import or a resumed
//! import skips what is already stored (docs/architecture.md "Idempotent writes").

use std::collections::HashMap;

use arrow::array::RecordBatch;
use deltalake_core::DeltaTable;

use super::by_name::rows_after;
use super::chunk::ParsedChunk;
use crate::store::commit::{Append, Committed, Plan, Writer, commit};
use crate::store::quarantine::{Rejected, quarantine_batch};
use crate::store::seq::SeqClock;
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

/// Writes an import's chunks, file after file, to tables it opens once;
/// `app_id` names the file being written by its content hash.
pub struct Committer {
    store: Store,
    app_id: String,
    /// Workspace whose quarantine keeps rejected lines, if any.
    quarantine: Option<String>,
    tables: HashMap<(String, TableKind), Written>,
    seq: SeqClock,
}

/// A table an import opened: as its last commit left it, and how many
/// commits the import made to it.
pub struct Written {
    pub table: DeltaTable,
    pub commits: u64,
}

impl Committer {
    pub fn new(store: Store, quarantine: Option<String>) -> Committer {
        Committer {
            store,
            app_id: String::new(),
            quarantine,
            tables: HashMap::new(),
            seq: SeqClock::default(),
        }
    }

    /// Stores the chunk's events and rejects that are not stored yet.
    pub async fn commit(&mut self, mut chunk: ParsedChunk) -> Result<ChunkOutcome, StoreError> {
        let mut outcome = ChunkOutcome::default();
        let last_line = chunk.last_line as i64;
        chunk.order_events();
        for (workspace, events) in chunk.ordered {
            let count = events.lines.len() as u64;
            let batches = events.numbered(self.seq.reserve(events.lines.len()));
            let lines = events.lines;
            let stored = self
                .append(&workspace, TableKind::Events, last_line, |committed| {
                    rows_after(&batches, &lines, committed)
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
                    vec![quarantine_batch(&fresh, received_at)]
                })
                .await?;
        }
        Ok(outcome)
    }

    /// The chunks committed next are the file's named `app_id`.
    pub fn start_file(&mut self, app_id: String) {
        self.app_id = app_id;
    }

    /// The tables this committer opened, and what it wrote to each.
    pub fn into_written(self) -> impl Iterator<Item = Written> {
        self.tables.into_values()
    }

    /// Appends the rows `build(committed)` returns, recording `last_line`;
    /// returns how many rows were stored (0 when already committed).
    async fn append(
        &mut self,
        workspace: &str,
        kind: TableKind,
        last_line: i64,
        build: impl Fn(i64) -> Vec<RecordBatch> + Send,
    ) -> Result<u64, StoreError> {
        let app_id = self.app_id.clone();
        let written = self.table(workspace, kind).await?;
        let mut writer = ChunkWriter {
            app_id: &app_id,
            last_line,
            build,
            rows: 0,
        };
        if let Committed::Version(_) = commit(&mut written.table, &mut writer).await? {
            written.commits += 1;
        }
        Ok(writer.rows)
    }

    async fn table(
        &mut self,
        workspace: &str,
        kind: TableKind,
    ) -> Result<&mut Written, StoreError> {
        let key = (workspace.to_string(), kind);
        if !self.tables.contains_key(&key) {
            let table = self.store.open_or_create(workspace, kind).await?;
            let written = Written { table, commits: 0 };
            self.tables.insert(key.clone(), written);
        }
        Ok(self.tables.get_mut(&key).expect("inserted above"))
    }
}

/// One chunk's rows for one table: those after the lines this file's
/// import has committed to it so far (a resumed or concurrent import may
/// have committed some or all of them).
struct ChunkWriter<'a, B> {
    app_id: &'a str,
    last_line: i64,
    build: B,
    /// Rows in the last plan (what was stored if it committed).
    rows: u64,
}

impl<B: Fn(i64) -> Vec<RecordBatch> + Send> Writer for ChunkWriter<'_, B> {
    type Error = StoreError;

    async fn plan(&mut self, table: &DeltaTable) -> Result<Plan, StoreError> {
        self.rows = 0;
        let committed = committed_lines(table, self.app_id).await?;
        if self.last_line <= committed {
            return Ok(Plan::Nothing);
        }
        let batches = (self.build)(committed);
        self.rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        Ok(Plan::Append(Append::recorded(
            batches,
            self.app_id,
            self.last_line,
        )))
    }
}

async fn committed_lines(table: &DeltaTable, app_id: &str) -> Result<i64, StoreError> {
    Ok(table::app_progress(table, app_id).await?.unwrap_or(0))
}
