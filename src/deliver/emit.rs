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
//! - two workers emitting for the same run race for the same table
//!   version; the loser's commit fails, and planned again on the winner's
//!   version (`store::commit`) it finds the winner's events and stores
//!   nothing.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::{AsArray, RecordBatch};
use chrono::{DateTime, Utc};
use datafusion::prelude::{col, lit};
use deltalake_core::DeltaTable;

use super::DeliverError;
use super::webhook::Attempted;
use crate::event::shapes::parse_event;
use crate::event::{EventBatchBuilder, ParsedEvent};
use crate::sql::QueryError;
use crate::store::commit::{Append, Plan, Writer, commit, txn};
use crate::store::seq::SeqClock;
use crate::store::{Store, TableKind, table};

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

/// Commits the events not already stored, asking again after a lost race.
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
    let mut writer = EmitWriter {
        events,
        received_at: now.timestamp_micros(),
        seq: SeqClock::default(),
    };
    commit(&mut table, &mut writer)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Plans one commit of the events the table does not hold yet.
struct EmitWriter<'a> {
    events: &'a [(Emission<'a>, ParsedEvent<'a>)],
    received_at: i64,
    seq: SeqClock,
}

impl Writer for EmitWriter<'_> {
    type Error = DeliverError;

    /// Skips what earlier commits of these runs stored; the rest, with one
    /// txn per run.
    async fn plan(&mut self, table: &DeltaTable) -> Result<Plan, DeliverError> {
        let mut progress: BTreeMap<&str, i64> = BTreeMap::new();
        let mut suspects = Vec::new();
        for (emission, _) in self.events {
            if progress.contains_key(emission.run_id) {
                continue;
            }
            let done = table::app_progress(table, &emit_app_id(emission.run_id)).await?;
            progress.insert(emission.run_id, done.unwrap_or(0));
            if done.is_some() {
                suspects.extend(
                    self.events
                        .iter()
                        .filter(|(e, _)| e.run_id == emission.run_id)
                        .map(|(e, _)| e.delivery_id),
                );
            }
        }
        let stored = stored_event_ids(table, &suspects).await?;
        let fresh: Vec<&(Emission, ParsedEvent)> = self
            .events
            .iter()
            .filter(|(e, _)| !stored.contains(e.delivery_id))
            .collect();
        if fresh.is_empty() {
            return Ok(Plan::Nothing);
        }
        let mut builder = EventBatchBuilder::with_capacity(fresh.len());
        let mut txns: HashMap<&str, i64> = HashMap::new();
        for (line, (emission, event)) in fresh.iter().enumerate() {
            builder.append(event, line as u64, self.received_at);
            txns.insert(emission.run_id, progress[emission.run_id] + 1);
        }
        let batch = builder.finish(self.seq.reserve(fresh.len()));
        let txns = txns
            .into_iter()
            .map(|(run, version)| txn(&emit_app_id(run), version))
            .collect();
        Ok(Plan::Append(Append {
            batches: vec![batch],
            txns,
        }))
    }
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
