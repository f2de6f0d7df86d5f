//! The ledger's records and the Arrow rows one run commits: each kind is
//! built from its own columns only, then widened to the table's schema.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, new_null_array,
};

use super::{Kind, ledger_schema};

/// One trigger run, committed or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub trigger: String,
    pub from_version: i64,
    pub to_version: i64,
    pub started_at: i64,
    pub finished_at: i64,
    /// The run's clock (`--now`, else the time it started): identity TTL
    /// and frequency caps are measured against it.
    pub clock: i64,
    pub matched: i64,
    pub resolved: i64,
    pub unresolved: i64,
    pub dropped: i64,
    /// Rows this run deferred until an identity arrives (`wait_for_identity`).
    pub pending: i64,
    /// Deferred rows this run gave up on (their wait is over).
    pub expired: i64,
    /// Deliveries held because a flow planned more than its
    /// `max_deliveries_per_run`.
    pub held: i64,
    pub error: Option<String>,
}

/// One match: the contact a run fires for, and the row's other columns.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchRecord {
    /// Its place among the run's matches: deliveries name their match by it.
    pub ordinal: i64,
    /// `email:…`, `user_id:…` or `client_id:…` (docs/reference.md "Contacts").
    pub contact: String,
    /// The row's `event_id` when the query selected one: then each event
    /// fires on its own (the match key is contact and event id).
    pub event_id: Option<String>,
    pub email: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// The match's other columns as a JSON object.
    pub data: String,
}

/// A row that needs an identity and waits for one (docs/reference.md
/// "Identity"): a later run that can resolve it fires it, once.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRecord {
    /// Deterministic: the deferring run and the row's place in it.
    pub pending_id: String,
    /// The query's row as a JSON object, decoded again by later runs.
    pub row: String,
    /// Microseconds since the epoch: after this (by a run's clock) it expires.
    pub wait_until: i64,
    pub email: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
}

/// How a pending row ended, and in which run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Resolved,
    Expired,
}

impl Settled {
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Resolved => "resolved",
            Settled::Expired => "expired",
        }
    }
}

/// One planned delivery: an action a flow takes for one match in one run,
/// or the record of why it does not (`held_out`, `filtered`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// Deterministic: the same for a re-run window (`plan::delivery_id`).
    pub delivery_id: String,
    pub flow: String,
    pub action: String,
    /// The match (its `ordinal`) this delivery is for.
    pub ordinal: i64,
    pub contact: String,
    /// The experiment arm (`holdout` for the held-out), if the flow has one.
    pub variant: Option<String>,
    /// The branch taken (its index in the flow file).
    pub branch: Option<i64>,
    /// `pending`, `held_out` or `filtered`.
    pub status: String,
    /// Why a delivery is held out or filtered.
    pub reason: Option<String>,
    /// What to do, rendered when planned (JSON; see `deliver`). Never holds a secret.
    pub payload: Option<String>,
}

/// Everything one run commits besides its cursor.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunRows<'a> {
    pub matches: &'a [MatchRecord],
    pub deliveries: &'a [DeliveryRecord],
    /// Rows deferred by this run.
    pub pending: &'a [PendingRecord],
    /// Earlier pending rows this run resolved or gave up on.
    pub settled: &'a [(String, Settled)],
}

/// The ledger rows of one run: the run itself, its matches, its
/// deliveries, the rows it defers and the pending rows it settles.
pub fn run_batch(run: &RunRecord, rows: &RunRows) -> Vec<RecordBatch> {
    batch_of(Kind::Run, run, rows)
}

/// The ledger rows of a backfill: as a run's, its own row of kind `backfill`.
pub fn backfill_batch(run: &RunRecord, rows: &RunRows) -> Vec<RecordBatch> {
    batch_of(Kind::Backfill, run, rows)
}

fn batch_of(kind: Kind, run: &RunRecord, rows: &RunRows) -> Vec<RecordBatch> {
    let mut batches = vec![run_rows(kind, run)];
    if !rows.matches.is_empty() {
        batches.push(match_rows(run, rows.matches));
    }
    if !rows.deliveries.is_empty() {
        batches.push(delivery_rows(run, rows.deliveries));
    }
    if !rows.pending.is_empty() {
        batches.push(pending_rows(run, rows.pending));
    }
    if !rows.settled.is_empty() {
        batches.push(settled_rows(run, rows.settled));
    }
    batches
}

fn pending_rows(run: &RunRecord, pending: &[PendingRecord]) -> RecordBatch {
    let text = |f: fn(&PendingRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(pending.iter().map(f)))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("pending_id", text(|p| Some(&p.pending_id))),
        ("row", text(|p| Some(&p.row))),
        (
            "wait_until",
            utc(pending.iter().map(|p| Some(p.wait_until)).collect()),
        ),
        ("email", text(|p| p.email.as_deref())),
        ("user_id", text(|p| p.user_id.as_deref())),
        ("client_id", text(|p| p.client_id.as_deref())),
    ];
    widen(Kind::Pending, run, pending.len(), columns)
}

fn settled_rows(run: &RunRecord, settled: &[(String, Settled)]) -> RecordBatch {
    let ids = settled.iter().map(|(id, _)| id.as_str());
    let how = settled.iter().map(|(_, s)| s.as_str());
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("pending_id", Arc::new(StringArray::from_iter_values(ids))),
        ("settled", Arc::new(StringArray::from_iter_values(how))),
    ];
    widen(Kind::Settled, run, settled.len(), columns)
}

/// The ledger row of an operator's cursor move (a run record's window
/// columns: where the cursor was, where it went).
pub fn cursor_batch(moved: &RunRecord) -> RecordBatch {
    window_row(Kind::Cursor, moved)
}

/// The ledger row of a `tripwire resume` (the window columns: the skipped
/// range, or the cursor twice when nothing was skipped).
pub fn resume_batch(resumed: &RunRecord) -> RecordBatch {
    window_row(Kind::Resume, resumed)
}

fn window_row(kind: Kind, record: &RunRecord) -> RecordBatch {
    let number = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("from_version", number(record.from_version)),
        ("to_version", number(record.to_version)),
        ("started_at", utc(vec![Some(record.started_at)])),
    ];
    widen(kind, record, 1, columns)
}

fn run_rows(kind: Kind, run: &RunRecord) -> RecordBatch {
    let number = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
    let time = |v: i64| -> ArrayRef { utc(vec![Some(v)]) };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("from_version", number(run.from_version)),
        ("to_version", number(run.to_version)),
        ("started_at", time(run.started_at)),
        ("matched", number(run.matched)),
        ("resolved", number(run.resolved)),
        ("unresolved", number(run.unresolved)),
        ("dropped", number(run.dropped)),
        ("pending", number(run.pending)),
        ("expired", number(run.expired)),
        ("held", number(run.held)),
        (
            "error",
            Arc::new(StringArray::from(vec![run.error.clone()])),
        ),
    ];
    widen(kind, run, 1, columns)
}

fn match_rows(run: &RunRecord, matches: &[MatchRecord]) -> RecordBatch {
    let text = |f: fn(&MatchRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(matches.iter().map(f)))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "ordinal",
            Arc::new(Int64Array::from_iter_values(
                matches.iter().map(|m| m.ordinal),
            )),
        ),
        ("contact", text(|m| Some(&m.contact))),
        ("event_id", text(|m| m.event_id.as_deref())),
        ("email", text(|m| m.email.as_deref())),
        ("user_id", text(|m| m.user_id.as_deref())),
        ("client_id", text(|m| m.client_id.as_deref())),
        ("data", text(|m| Some(&m.data))),
    ];
    widen(Kind::Match, run, matches.len(), columns)
}

fn delivery_rows(run: &RunRecord, deliveries: &[DeliveryRecord]) -> RecordBatch {
    let text = |f: fn(&DeliveryRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(deliveries.iter().map(f)))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "ordinal",
            Arc::new(Int64Array::from_iter_values(
                deliveries.iter().map(|d| d.ordinal),
            )),
        ),
        ("contact", text(|d| Some(&d.contact))),
        ("delivery_id", text(|d| Some(&d.delivery_id))),
        ("flow", text(|d| Some(&d.flow))),
        ("action", text(|d| Some(&d.action))),
        ("variant", text(|d| d.variant.as_deref())),
        (
            "branch",
            Arc::new(Int64Array::from_iter(deliveries.iter().map(|d| d.branch))),
        ),
        ("status", text(|d| Some(&d.status))),
        ("reason", text(|d| d.reason.as_deref())),
        ("payload", text(|d| d.payload.as_deref())),
    ];
    widen(Kind::Delivery, run, deliveries.len(), columns)
}

/// `rows` rows of `kind` with `columns` and the columns every row shares;
/// every other ledger column is null.
fn widen(kind: Kind, run: &RunRecord, rows: usize, columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let repeat = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; rows])) };
    let mut given: Vec<(&str, ArrayRef)> = vec![
        ("kind", repeat(kind.as_str())),
        ("run_id", repeat(&run.run_id)),
        ("trigger", repeat(&run.trigger)),
        ("finished_at", utc(vec![Some(run.finished_at); rows])),
        ("clock", utc(vec![Some(run.clock); rows])),
    ];
    given.extend(columns);
    let schema = ledger_schema();
    let arrays: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(
            |field| match given.iter().find(|(name, _)| *name == field.name()) {
                Some((_, array)) => array.clone(),
                None => new_null_array(field.data_type(), rows),
            },
        )
        .collect();
    RecordBatch::try_new(schema, arrays).expect("every column is built to the ledger schema")
}

fn utc(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}
