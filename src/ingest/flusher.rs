//! The flusher: turns sealed WAL segments into commits of the workspaces'
//! `events` and `quarantine` tables, oldest first, then deletes them.
//!
//! Each commit records `txn("ingest:<node id>", segment number)` (docs/architecture.md
//! "Idempotent writes"): a segment whose number a table has already recorded
//! was committed before a crash and is skipped there, so a replay neither
//! loses nor duplicates events. A segment that fails to commit stops the
//! flush (later segments wait), so numbers are committed in order.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use deltalake_core::DeltaTable;
use tokio::sync::watch;

use super::Ingest;
use super::learn::SAVE_EVERY;
use super::record::{StoredEvent, StoredReject, WalRecord};
use super::wal::Segment;
use crate::event::EventBatchBuilder;
use crate::store::commit::{Once, commit};
use crate::store::quarantine::{Rejected, quarantine_batch};
use crate::store::seq::SeqClock;
use crate::store::{Store, StoreError, TableKind};

/// How often the flusher seals an old segment and commits what is sealed.
pub const FLUSH_TICK: Duration = Duration::from_millis(200);

/// One workspace's share of a segment.
#[derive(Default)]
struct Share {
    events: Vec<StoredEvent>,
    rejects: Vec<StoredReject>,
}

/// Commits WAL segments; keeps the tables it has opened.
pub struct Flusher {
    store: Store,
    app_id: String,
    tables: HashMap<(String, TableKind), DeltaTable>,
    seq: SeqClock,
}

impl Flusher {
    pub fn new(store: Store, node_id: &str) -> Flusher {
        Flusher {
            store,
            app_id: format!("ingest:{node_id}"),
            tables: HashMap::new(),
            seq: SeqClock::default(),
        }
    }

    /// Commits every sealed segment, oldest first, removing each once
    /// committed. Returns how many events were committed.
    pub async fn flush_sealed(&mut self, ingest: &Ingest) -> Result<u64, StoreError> {
        let mut committed = 0;
        for segment in ingest.wal.sealed() {
            committed += self.commit_segment(&segment, ingest).await?;
            segment.remove().map_err(|e| StoreError::Root {
                root: "write-ahead log".into(),
                message: e.to_string(),
            })?;
        }
        ingest.metrics.flushed(committed);
        Ok(committed)
    }

    async fn commit_segment(
        &mut self,
        segment: &Segment,
        ingest: &Ingest,
    ) -> Result<u64, StoreError> {
        let records =
            tokio::task::block_in_place(|| segment.read()).map_err(|e| StoreError::Root {
                root: segment.path.display().to_string(),
                message: e.to_string(),
            })?;
        let number = i64::try_from(segment.number).unwrap_or(i64::MAX);
        let mut committed = 0;
        for (workspace, share) in split_by_workspace(&records, segment) {
            if !share.events.is_empty() {
                committed += share.events.len() as u64;
                let batch = self.events_batch(&share.events);
                self.commit_once(&workspace, TableKind::Events, vec![batch], number)
                    .await?;
                ingest.learn(&workspace, &share.events);
            }
            if !share.rejects.is_empty() {
                let batches = rejects_batches(&share.rejects);
                self.commit_once(&workspace, TableKind::Quarantine, batches, number)
                    .await?;
            }
        }
        Ok(committed)
    }

    fn events_batch(&mut self, events: &[StoredEvent]) -> RecordBatch {
        let mut builder = EventBatchBuilder::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            builder.append(&event.parsed(), i as u64, event.received_at);
        }
        builder.finish(self.seq.reserve(events.len()))
    }

    /// Appends `batches` with this node's txn at `number`, unless the table
    /// already recorded that number.
    async fn commit_once(
        &mut self,
        workspace: &str,
        kind: TableKind,
        batches: Vec<RecordBatch>,
        number: i64,
    ) -> Result<(), StoreError> {
        let key = (workspace.to_string(), kind);
        if !self.tables.contains_key(&key) {
            let table = self.store.open_or_create(workspace, kind).await?;
            self.tables.insert(key.clone(), table);
        }
        let table = self.tables.get_mut(&key).expect("opened above");
        let mut writer = Once {
            app_id: self.app_id.clone(),
            version: number,
            batches,
        };
        commit(table, &mut writer).await.map(|_| ())
    }
}

/// The segment's records grouped by workspace (sorted, for a stable order).
fn split_by_workspace(records: &[Vec<u8>], segment: &Segment) -> BTreeMap<String, Share> {
    let mut shares: BTreeMap<String, Share> = BTreeMap::new();
    for (i, bytes) in records.iter().enumerate() {
        match WalRecord::decode(bytes) {
            Ok(WalRecord::Event(event)) => shares
                .entry(event.workspace.clone())
                .or_default()
                .events
                .push(event),
            Ok(WalRecord::Rejected(reject)) => shares
                .entry(reject.workspace.clone())
                .or_default()
                .rejects
                .push(reject),
            // A checksummed record that does not decode can never be stored:
            // say so loudly rather than block every later segment.
            Err(e) => tracing::error!(
                segment = %segment.path.display(),
                record = i,
                "a record cannot be read and is skipped: {e}"
            ),
        }
    }
    shares
}

fn rejects_batches(rejects: &[StoredReject]) -> Vec<RecordBatch> {
    rejects
        .iter()
        .map(|r| {
            let rejected = Rejected {
                source: r.source.clone(),
                line: r.item,
                reason: r.reason.clone(),
                raw: r.raw.clone(),
            };
            quarantine_batch(&[&rejected], r.received_at)
        })
        .collect()
}

/// Seals segments by age and commits them every [`FLUSH_TICK`] until
/// `shutdown`; then writes out everything acknowledged and commits it.
pub async fn run_flusher(ingest: Arc<Ingest>, store: Store, mut shutdown: watch::Receiver<bool>) {
    let mut flusher = Flusher::new(store.clone(), ingest.wal.node_id());
    let mut last_save = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(FLUSH_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*shutdown.borrow() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => continue,
        }
        if let Err(e) = ingest.wal.seal(false).await {
            ingest.metrics.flush_failed();
            tracing::error!("sealing the write-ahead log: {e}");
        }
        flush_and_report(&mut flusher, &ingest).await;
        if last_save.elapsed() >= SAVE_EVERY {
            save_schemas(&ingest, &store).await;
            last_save = tokio::time::Instant::now();
        }
    }
    // Queued appends are written and the open segment sealed, then committed.
    if let Err(e) = ingest.wal.close().await {
        tracing::error!("closing the write-ahead log: {e}");
    }
    flush_and_report(&mut flusher, &ingest).await;
    save_schemas(&ingest, &store).await;
}

async fn save_schemas(ingest: &Ingest, store: &Store) {
    if let Err(e) = ingest.save_schemas(store).await {
        tracing::warn!("saving learned schemas (retried): {e}");
    }
}

async fn flush_and_report(flusher: &mut Flusher, ingest: &Ingest) {
    match flusher.flush_sealed(ingest).await {
        Ok(_) => {
            ingest.note_flush(None);
            ingest.note_flushed();
        }
        Err(e) => {
            ingest.metrics.flush_failed();
            ingest.note_flush(Some(e.to_string()));
            tracing::error!("committing the write-ahead log (retried): {e}");
        }
    }
}
