//! The flusher: turns sealed WAL segments into commits of the workspaces'
//! `events` and `quarantine` tables, oldest first, then deletes them.
//!
//! A flush takes every sealed segment (up to [`MAX_FLUSH_BYTES`]) and
//! appends their rows to each table in one Delta commit recording
//! `txn("ingest:<node id>", highest segment number)` (docs/architecture.md
//! "Idempotent writes"). Segments reach each table in order, so that number
//! says every earlier segment is in too: a replay after a crash appends only
//! the segments above it, neither losing nor duplicating events. A commit
//! that fails stops the flush (later segments wait), so numbers are
//! committed in order.

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
use crate::store::commit::{Append, Plan, Writer, commit};
use crate::store::quarantine::{Rejected, quarantine_batch};
use crate::store::seq::SeqClock;
use crate::store::table::app_progress;
use crate::store::{Store, StoreError, TableKind};

/// How often the flusher seals an old segment and commits what is sealed.
pub const FLUSH_TICK: Duration = Duration::from_millis(200);

/// The most WAL bytes one flush reads and commits together (at least one
/// segment): every sealed segment within it lands in each table as one
/// Delta commit, and a bigger backlog (after a stall, at startup) is
/// committed in several, so the flusher's memory stays bounded.
pub const MAX_FLUSH_BYTES: u64 = 128 << 20;

/// One workspace's share of a segment.
#[derive(Default)]
struct Share<'a> {
    events: Vec<StoredEvent<'a>>,
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

    /// Commits every sealed segment, oldest first: as many as fit in
    /// [`MAX_FLUSH_BYTES`] go to each table in one Delta commit, then are
    /// removed. Returns how many events were committed.
    pub async fn flush_sealed(&mut self, ingest: &Ingest) -> Result<u64, StoreError> {
        let mut committed = 0;
        let mut sealed = ingest.wal.sealed();
        while !sealed.is_empty() {
            let sizes: Vec<u64> = sealed.iter().map(Segment::bytes).collect();
            let rest = sealed.split_off(flush_group_len(&sizes, MAX_FLUSH_BYTES));
            committed += self.commit_segments(&sealed, ingest).await?;
            for segment in sealed {
                segment.remove().map_err(|e| StoreError::Root {
                    root: "write-ahead log".into(),
                    message: e.to_string(),
                })?;
            }
            sealed = rest;
        }
        ingest.metrics.flushed(committed);
        Ok(committed)
    }

    /// Commits `segments` (consecutive, oldest first) to each table they
    /// hold rows for, in one commit per table.
    async fn commit_segments(
        &mut self,
        segments: &[Segment],
        ingest: &Ingest,
    ) -> Result<u64, StoreError> {
        let mut read = Vec::with_capacity(segments.len());
        for segment in segments {
            // On the flusher's own thread (`spawn_flusher`): blocking is fine.
            let records = segment.read().map_err(|e| StoreError::Root {
                root: segment.path.display().to_string(),
                message: e.to_string(),
            })?;
            read.push(records);
        }
        // Events borrow their texts from the records read.
        let mut shares: BTreeMap<String, Vec<(i64, Share)>> = BTreeMap::new();
        for (segment, records) in segments.iter().zip(&read) {
            let number = i64::try_from(segment.number).unwrap_or(i64::MAX);
            for (workspace, share) in split_by_workspace(records, segment) {
                shares.entry(workspace).or_default().push((number, share));
            }
        }
        let mut committed = 0;
        for (workspace, shares) in shares {
            let mut events = Vec::new();
            let mut rejects = Vec::new();
            for (number, share) in &shares {
                if !share.events.is_empty() {
                    committed += share.events.len() as u64;
                    events.push((*number, vec![self.events_batch(&share.events)]));
                }
                if !share.rejects.is_empty() {
                    rejects.push((*number, rejects_batches(&share.rejects)));
                }
            }
            self.commit_once(&workspace, TableKind::Events, events)
                .await?;
            for (_, share) in &shares {
                ingest.learn(&workspace, &share.events);
            }
            self.commit_once(&workspace, TableKind::Quarantine, rejects)
                .await?;
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

    /// Appends the segments' rows that the table has not recorded yet, in
    /// one commit with this node's txn at the highest number appended.
    async fn commit_once(
        &mut self,
        workspace: &str,
        kind: TableKind,
        segments: Vec<(i64, Vec<RecordBatch>)>,
    ) -> Result<(), StoreError> {
        if segments.is_empty() {
            return Ok(());
        }
        let key = (workspace.to_string(), kind);
        if !self.tables.contains_key(&key) {
            let table = self.store.open_or_create(workspace, kind).await?;
            self.tables.insert(key.clone(), table);
        }
        let table = self.tables.get_mut(&key).expect("opened above");
        let mut writer = Segments {
            app_id: self.app_id.clone(),
            segments,
        };
        commit(table, &mut writer).await.map(|_| ())
    }
}

/// How many sealed segments of these `sizes` (oldest first) one flush
/// commits together: as many as fit in `max_bytes`, and at least one.
fn flush_group_len(sizes: &[u64], max_bytes: u64) -> usize {
    let mut total = 0u64;
    let fitting = sizes
        .iter()
        .take_while(|&&size| {
            total = total.saturating_add(size);
            total <= max_bytes
        })
        .count();
    fitting.max(1).min(sizes.len())
}

/// Which of a table's segments (numbers, ascending) a commit appends when
/// the table's txn for this node stands at `progress`: those above it. The
/// txn it records is the last of them; since segments reach each table in
/// order, that number says every earlier one is in too.
pub fn unrecorded(numbers: &[i64], progress: Option<i64>) -> std::ops::Range<usize> {
    let first = numbers.partition_point(|&n| Some(n) <= progress);
    first..numbers.len()
}

/// The flusher's writer: a run of segments' rows for one table, each
/// appended unless the table's txn shows it committed (by this flush
/// before a crash, or by an earlier one).
struct Segments {
    app_id: String,
    /// (segment number, its rows), numbers ascending.
    segments: Vec<(i64, Vec<RecordBatch>)>,
}

impl Writer for Segments {
    type Error = StoreError;

    async fn plan(&mut self, table: &DeltaTable) -> Result<Plan, StoreError> {
        let progress = app_progress(table, &self.app_id).await?;
        let numbers: Vec<i64> = self.segments.iter().map(|(n, _)| *n).collect();
        let range = unrecorded(&numbers, progress);
        let Some(&last) = numbers[range.clone()].last() else {
            return Ok(Plan::Nothing);
        };
        let batches = self.segments[range]
            .iter()
            .flat_map(|(_, batches)| batches.iter().cloned())
            .collect();
        Ok(Plan::Append(Append::recorded(batches, &self.app_id, last)))
    }
}

/// The segment's records grouped by workspace (sorted, for a stable order).
fn split_by_workspace<'a>(
    records: &'a [Vec<u8>],
    segment: &Segment,
) -> BTreeMap<String, Share<'a>> {
    let mut shares: BTreeMap<String, Share> = BTreeMap::new();
    for (i, bytes) in records.iter().enumerate() {
        match WalRecord::decode(bytes) {
            Ok(WalRecord::Event(event)) => {
                share_of(&mut shares, &event.workspace).events.push(event)
            }
            Ok(WalRecord::Rejected(reject)) => share_of(&mut shares, &reject.workspace)
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

/// The share of `workspace`, added when it is the first of its records.
fn share_of<'s, 'a>(
    shares: &'s mut BTreeMap<String, Share<'a>>,
    workspace: &str,
) -> &'s mut Share<'a> {
    if !shares.contains_key(workspace) {
        shares.insert(workspace.to_string(), Share::default());
    }
    shares.get_mut(workspace).expect("added above")
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

/// Runs [`run_flusher`] on a thread of its own, with a runtime of its own.
/// As a task among the handlers' it got a share of the workers like any
/// one connection: under sustained load its CPU work (decoding, Parquet
/// encoding) fell behind what they acknowledged, and the WAL grew until
/// the backlog limit answered 503. The thread's work ends with the task.
pub fn spawn_flusher(
    ingest: Arc<Ingest>,
    store: Store,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(run_flusher(ingest, store, shutdown)),
            Err(e) => tracing::error!("the flusher's runtime cannot start: {e}"),
        }
    })
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
        if held_for_tests() {
            continue;
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

/// Tests set `TRIPWIRE_HOLD_FLUSH=<file>`: while that file exists, the
/// running flusher commits nothing, so acknowledged events pile up in the
/// WAL (the startup replay and the flush at shutdown still commit).
fn held_for_tests() -> bool {
    std::env::var_os("TRIPWIRE_HOLD_FLUSH").is_some_and(|file| std::path::Path::new(&file).exists())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_takes_what_fits_and_always_one() {
        assert_eq!(flush_group_len(&[10, 10, 10], 100), 3);
        assert_eq!(flush_group_len(&[10, 10, 10], 20), 2);
        assert_eq!(flush_group_len(&[500, 10], 100), 1, "a big one goes alone");
        assert_eq!(flush_group_len(&[], 100), 0);
    }

    #[test]
    fn a_replay_appends_only_the_segments_above_the_txn() {
        let numbers = [3, 4, 7, 9];
        assert_eq!(unrecorded(&numbers, None), 0..4);
        assert_eq!(unrecorded(&numbers, Some(2)), 0..4);
        assert_eq!(unrecorded(&numbers, Some(4)), 2..4, "3 and 4 are in");
        assert_eq!(unrecorded(&numbers, Some(5)), 2..4);
        assert_eq!(unrecorded(&numbers, Some(9)), 4..4, "all are in");
        assert_eq!(unrecorded(&numbers, Some(12)), 4..4);
    }
}
