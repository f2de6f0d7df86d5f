//! Event deliveries: the flow's event is stored in the workspace's `events`
//! table (where triggers see it like any other), once.
//!
//! # Stored once, though recorded later
//! The event is appended first and the delivery recorded as delivered in
//! the attempts table afterwards, so a crash in between leaves a stored
//! event whose delivery is still due. To make the retry store nothing twice:
//! - the event's `event_id` is its `delivery_id` (deterministic);
//! - every events commit of the worker carries one Delta application
//!   transaction per run it emits for: `txn("emit:<run_id>", n)`, `n`
//!   counting that run's emit commits;
//! - before appending, runs with no such transaction yet are known to have
//!   emitted nothing (the usual case: no read of the events table at all);
//!   for the others, the events they would emit are looked up by `event_id`
//!   and skipped when found;
//! - two workers emitting for the same run race on the same app id, so
//!   Delta refuses the second commit (`ConcurrentTransaction`); it
//!   refreshes, finds the winner's events, and stores nothing.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::{AsArray, RecordBatch};
use chrono::{DateTime, Utc};
use datafusion::prelude::{col, lit};
use deltalake_core::DeltaTable;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};

use super::webhook::Attempted;
use crate::event::shapes::parse_event;
use crate::event::{EventBatchBuilder, ParsedEvent};
use crate::import::commit::SeqClock;
use crate::sql::QueryError;
use crate::store::{Store, StoreError, TableKind, table};

/// How often an events commit that lost a race is tried again.
pub const EMIT_COMMIT_TRIES: usize = 5;

/// The application id of a run's emit commits.
pub fn emit_app_id(run_id: &str) -> String {
    format!("emit:{run_id}")
}

/// One event to emit for one delivery.
#[derive(Debug, Clone, Copy)]
pub struct Emission<'a> {
    pub delivery_id: &'a str,
    pub run_id: &'a str,
    /// The event as JSON text (the name/payload shape).
    pub event: &'a str,
}

/// Stores the events not stored yet, in one commit; one outcome per emission.
pub async fn emit(
    store: &Store,
    workspace: &str,
    emissions: &[Emission<'_>],
    now: DateTime<Utc>,
) -> Vec<Attempted> {
    let mut outcomes: Vec<Option<Attempted>> = vec![None; emissions.len()];
    let mut valid = Vec::new();
    for (i, emission) in emissions.iter().enumerate() {
        match parse_event(emission.event) {
            Ok(mut event) => {
                event.event_id = Some(Cow::Borrowed(emission.delivery_id));
                valid.push((*emission, event));
            }
            Err(e) => outcomes[i] = Some(Attempted::refused(format!("bad event: {e}"))),
        }
    }
    let stored = match valid.is_empty() {
        true => Ok(()),
        false => store_once(store, workspace, &valid, now).await,
    };
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| match &stored {
                Ok(()) => Attempted::delivered(None),
                Err(e) => Attempted::transient(format!("cannot store the event: {e}")),
            })
        })
        .collect()
}

/// Commits the events not already stored, retrying a lost race.
async fn store_once(
    store: &Store,
    workspace: &str,
    events: &[(Emission<'_>, ParsedEvent<'_>)],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let mut table = store
        .open_or_create(workspace, TableKind::Events)
        .await
        .map_err(|e| e.to_string())?;
    let mut last_error = String::new();
    for _ in 0..EMIT_COMMIT_TRIES {
        match append_new(&mut table, events, now).await {
            Ok(()) => return Ok(()),
            Err(e) => last_error = e,
        }
        table::refresh(&mut table)
            .await
            .map_err(|e| e.to_string())?;
    }
    Err(last_error)
}

/// One try: skip what earlier commits of these runs stored, append the rest.
async fn append_new(
    table: &mut DeltaTable,
    events: &[(Emission<'_>, ParsedEvent<'_>)],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let mut progress: BTreeMap<&str, i64> = BTreeMap::new();
    let mut suspects = Vec::new();
    for (emission, _) in events {
        if progress.contains_key(emission.run_id) {
            continue;
        }
        let done = table::app_progress(table, &emit_app_id(emission.run_id))
            .await
            .map_err(|e| e.to_string())?;
        progress.insert(emission.run_id, done.unwrap_or(0));
        if done.is_some() {
            suspects.extend(
                events
                    .iter()
                    .filter(|(e, _)| e.run_id == emission.run_id)
                    .map(|(e, _)| e.delivery_id),
            );
        }
    }
    let stored = stored_event_ids(table, &suspects)
        .await
        .map_err(|e| e.to_string())?;
    let fresh: Vec<&(Emission, ParsedEvent)> = events
        .iter()
        .filter(|(e, _)| !stored.contains(e.delivery_id))
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let received_at = now.timestamp_micros();
    let mut builder = EventBatchBuilder::with_capacity(fresh.len());
    let mut txns: HashMap<&str, i64> = HashMap::new();
    for (line, (emission, event)) in fresh.iter().enumerate() {
        builder.append(event, line as u64, received_at);
        txns.insert(emission.run_id, progress[emission.run_id] + 1);
    }
    let batch = builder.finish(SeqClock::default().reserve(fresh.len()));
    let txns = txns
        .into_iter()
        .map(|(run, version)| Transaction::new(emit_app_id(run), version))
        .collect();
    append_with_txns(table, batch, txns)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Which of `ids` are already `event_id`s in the events table.
async fn stored_event_ids(table: &DeltaTable, ids: &[&str]) -> Result<HashSet<String>, QueryError> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let engine = |e: datafusion::error::DataFusionError| QueryError::Engine(e.to_string());
    let ctx = crate::sql::new_context()?;
    let provider = crate::sql::delta_provider(&ctx, Some(table.clone()), TableKind::Events).await?;
    let wanted = ids.iter().map(|id| lit(*id)).collect();
    let batches = ctx
        .read_table(provider)
        .and_then(|frame| frame.filter(col("event_id").in_list(wanted, false)))
        .and_then(|frame| frame.select_columns(&["event_id"]))
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?;
    Ok(batches.iter().flat_map(event_ids).collect())
}

fn event_ids(batch: &RecordBatch) -> Vec<String> {
    let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
        .expect("event_id is text");
    column
        .as_string::<i32>()
        .iter()
        .flatten()
        .map(str::to_string)
        .collect()
}

/// `table::append` with several application transactions in one commit.
async fn append_with_txns(
    table: &mut DeltaTable,
    batch: RecordBatch,
    txns: Vec<Transaction>,
) -> Result<i64, StoreError> {
    let url = table.table_url().clone();
    let delta = |e: deltalake_core::DeltaTableError| StoreError::delta(&url, e);
    let mut writer = RecordBatchWriter::for_table(table)
        .map_err(delta)?
        .with_writer_properties(table::writer_properties());
    writer.write(batch).await.map_err(delta)?;
    let adds = writer.flush().await.map_err(delta)?;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    let committed =
        CommitBuilder::from(CommitProperties::default().with_application_transactions(txns))
            .with_actions(adds.into_iter().map(Action::Add).collect())
            .build(
                Some(table.snapshot().map_err(delta)?),
                table.log_store(),
                operation,
            )
            .await
            .map_err(delta)?;
    let version = committed.version();
    table
        .update_incremental(Some(version))
        .await
        .map_err(delta)?;
    Ok(version as i64)
}
