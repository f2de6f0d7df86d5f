//! A workspace's open-deliveries index kept up to date (docs/architecture.md
//! "Open deliveries"): [`OpenIndex`] is the pure index (`open`), the table
//! versions and Delta ids it covers, and the deliveries this process has
//! in flight.
//!
//! Before each batch it follows both tables' logs from the versions it
//! covers (`follow`), the attempts table first and then the ledger, so every
//! attempt it folds is of a delivery its ledger read holds; it folds the
//! planned rows, then the attempts rows. It is rebuilt from the whole
//! history (`state::open`) when it cannot follow (a commit that removed
//! rows, another table, too many commits) or cannot fold (`open::Anomaly`).
//! A fresh process starts from the newest snapshot (`snapshot`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use deltalake_core::DeltaTable;
use deltalake_core::logstore::LogStoreRef;

use super::DeliverError;
use super::open::{Entry, OpenDeliveries, Planned, Tried};
use super::snapshot::{self, Coverage};
use super::state::{self, Cap, Due};
use crate::sql::ledger::state_context;
use crate::store::follow::{self, Followed};
use crate::store::ledger::attempts::AttemptRecord;
use crate::store::{Store, StoreError, TableKind, table};

/// Commits folded since the last snapshot that make `serve` write a new
/// one (a command writes one when it finishes, `serve` when it stops).
pub const PERSIST_AFTER_COMMITS: i64 = 50;

/// Not recorded yet: the version a delivery in flight waits for.
const UNRECORDED: i64 = i64::MAX;

/// The columns of the ledger an open delivery needs.
const LEDGER_COLUMNS: &[&str] = &[
    "kind",
    "delivery_id",
    "run_id",
    "flow",
    "action",
    "status",
    "payload",
    "finished_at",
];

/// The columns of the attempts table the index folds.
const ATTEMPTS_COLUMNS: &[&str] = &[
    "delivery_id",
    "attempt",
    "status",
    "attempted_at",
    "next_attempt_at",
];

/// One workspace's open deliveries, as of the table versions it covers.
pub struct OpenIndex {
    open: OpenDeliveries,
    coverage: Coverage,
    attempts_log: LogStoreRef,
    ledger_log: LogStoreRef,
    /// Deliveries in flight here (chosen for a batch and not yet folded
    /// back): the attempts version that records them ([`UNRECORDED`] until
    /// their batch commits). No batch chooses them again meanwhile.
    taken: HashMap<Arc<str>, i64>,
    /// The coverage of the snapshot last written or loaded (none: rebuilt
    /// since), and the commits folded after it.
    saved: Option<(i64, i64)>,
    unsaved_commits: i64,
    /// A batch's own rows could not be folded: rebuild at the next catch-up.
    broken: bool,
}

/// The versions and Delta ids of the two tables as opened.
fn coverage_of(attempts: &DeltaTable, ledger: &DeltaTable) -> Result<Coverage, StoreError> {
    Ok(Coverage {
        attempts: table::version(attempts),
        ledger: table::version(ledger),
        attempts_id: table::table_id(attempts)?,
        ledger_id: table::table_id(ledger)?,
    })
}

/// Whether an index covering `held` may be caught up to `latest`.
fn may_follow(held: &Coverage, latest: &Coverage) -> bool {
    held.attempts_id == latest.attempts_id
        && held.ledger_id == latest.ledger_id
        && held.attempts <= latest.attempts
        && held.ledger <= latest.ledger
}

impl OpenIndex {
    /// The index of the workspace whose tables are `attempts` and `ledger`
    /// (just opened): `held` (this process's, from an earlier call) while
    /// it is of these tables, else the newest snapshot, else rebuilt; then
    /// caught up.
    pub async fn ready(
        store: &Store,
        workspace: &str,
        attempts: &DeltaTable,
        ledger: &DeltaTable,
        held: Option<OpenIndex>,
    ) -> Result<OpenIndex, DeliverError> {
        let latest = coverage_of(attempts, ledger)?;
        let held = held.filter(|h| may_follow(&h.coverage, &latest));
        let mut index = match held {
            Some(held) => held,
            None => match snapshot::load(store, workspace, &latest).await? {
                Some((open, coverage)) => OpenIndex {
                    saved: Some((coverage.attempts, coverage.ledger)),
                    open,
                    coverage,
                    attempts_log: attempts.log_store(),
                    ledger_log: ledger.log_store(),
                    taken: HashMap::new(),
                    unsaved_commits: 0,
                    broken: false,
                },
                None => OpenIndex::rebuilt(store, workspace).await?,
            },
        };
        index.catch_up(store, workspace).await?;
        Ok(index)
    }

    /// The index read from the whole history: the attempts table opened
    /// first, then the ledger.
    async fn rebuilt(store: &Store, workspace: &str) -> Result<OpenIndex, DeliverError> {
        let attempts = store.open_or_create(workspace, TableKind::Attempts).await?;
        let Some(ledger) = store.open(workspace, TableKind::Ledger).await? else {
            return Err(StoreError::Root {
                root: store.root().to_string(),
                message: format!("workspace {workspace:?} lost its ledger"),
            }
            .into());
        };
        let ctx = state_context(&ledger, &attempts).await?;
        let mut open = OpenDeliveries::new();
        for row in state::open(&ctx).await? {
            let id: Arc<str> = Arc::from(row.planned.delivery_id.as_str());
            let entry = Entry {
                run_id: row.planned.run_id.into(),
                flow: row.planned.flow.into(),
                action: row.planned.action.into(),
                payload: row.planned.payload.map(Into::into),
                planned_at: row.planned.planned_at,
                standing: row.standing,
                last_attempt: row.last_attempt,
                reset_attempt: row.last_attempt - row.tries,
                first_try: row.first_try,
            };
            open.insert(id, entry);
        }
        Ok(OpenIndex {
            open,
            coverage: coverage_of(&attempts, &ledger)?,
            attempts_log: attempts.log_store(),
            ledger_log: ledger.log_store(),
            taken: HashMap::new(),
            saved: None,
            unsaved_commits: 0,
            broken: false,
        })
    }

    /// The open deliveries.
    pub fn open(&self) -> &OpenDeliveries {
        &self.open
    }

    /// Folds in what was committed to either table since the versions it
    /// covers; rebuilt when that cannot be folded.
    pub async fn catch_up(&mut self, store: &Store, workspace: &str) -> Result<(), DeliverError> {
        if let Err(why) = self.follow().await? {
            tracing::debug!(workspace, "rebuilding the open deliveries index: {why}");
            let taken = std::mem::take(&mut self.taken);
            *self = OpenIndex::rebuilt(store, workspace).await?;
            self.taken = taken;
            tracing::debug!(
                workspace,
                open = self.open.len(),
                "open deliveries index rebuilt"
            );
        }
        let covered = self.coverage.attempts;
        self.taken.retain(|_, version| *version > covered);
        Ok(())
    }

    /// Reads and folds the new commits; `Err(why)` when it must be rebuilt.
    async fn follow(&mut self) -> Result<Result<(), String>, DeliverError> {
        if self.broken {
            return Ok(Err("a batch's own attempts did not fold".into()));
        }
        let attempts = follow::since(
            self.attempts_log.as_ref(),
            self.coverage.attempts,
            &self.coverage.attempts_id,
        )
        .await?;
        let Followed::Added {
            to: attempts_to,
            files: attempts_files,
        } = attempts
        else {
            return Ok(Err(rewritten("attempts", attempts)));
        };
        let ledger = follow::since(
            self.ledger_log.as_ref(),
            self.coverage.ledger,
            &self.coverage.ledger_id,
        )
        .await?;
        let Followed::Added {
            to: ledger_to,
            files: ledger_files,
        } = ledger
        else {
            return Ok(Err(rewritten("ledger", ledger)));
        };
        let mut planned = Vec::new();
        for file in &ledger_files {
            let batches =
                follow::read_columns(self.ledger_log.as_ref(), file, LEDGER_COLUMNS).await?;
            planned.extend(batches.iter().flat_map(planned_rows));
        }
        let mut tried = Vec::new();
        for file in &attempts_files {
            let batches =
                follow::read_columns(self.attempts_log.as_ref(), file, ATTEMPTS_COLUMNS).await?;
            tried.extend(batches.iter().flat_map(tried_rows));
        }
        planned.into_iter().for_each(|p| self.open.plan(p));
        if let Err(anomaly) = self.open.apply(tried) {
            return Ok(Err(anomaly.to_string()));
        }
        self.unsaved_commits +=
            (attempts_to - self.coverage.attempts) + (ledger_to - self.coverage.ledger);
        self.coverage.attempts = attempts_to;
        self.coverage.ledger = ledger_to;
        Ok(Ok(()))
    }

    /// Up to `limit` deliveries due at `now` (µs), none already in flight,
    /// which are then in flight until [`OpenIndex::settle`] or
    /// [`OpenIndex::release`].
    pub fn choose(&mut self, now: i64, limit: usize, caps: &[Cap]) -> Vec<Due> {
        let taken = &self.taken;
        let due = self
            .open
            .due(now, limit, caps, &|id| taken.contains_key(id));
        for d in &due {
            self.taken
                .insert(Arc::from(d.delivery_id.as_str()), UNRECORDED);
        }
        due
    }

    /// Deliveries no longer in flight (not tried after all).
    pub fn release<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            self.taken.remove(id);
        }
    }

    /// Nothing is in flight any more (the call ends).
    pub fn release_all(&mut self) {
        self.taken.clear();
    }

    /// A batch's attempts `rows` were committed as attempts version
    /// `version` (`None`: nothing was, another worker had recorded them).
    /// Folded at once when it is the next version; else its deliveries
    /// stay in flight until a catch-up reads it.
    pub fn settle(&mut self, version: Option<i64>, rows: &[AttemptRecord]) {
        let ids = rows.iter().map(|r| r.delivery_id.as_str());
        match version {
            Some(v) if v == self.coverage.attempts + 1 => {
                let tried = rows.iter().map(tried_of).collect();
                match self.open.apply(tried) {
                    Ok(()) => {
                        self.coverage.attempts = v;
                        self.unsaved_commits += 1;
                        self.release(ids);
                    }
                    // The next catch-up follows from before `v` and rebuilds.
                    Err(anomaly) => {
                        tracing::debug!("cannot fold a batch's own attempts: {anomaly}");
                        self.broken = true;
                    }
                }
            }
            Some(v) if v > self.coverage.attempts => {
                for id in ids {
                    if let Some(waits) = self.taken.get_mut(id) {
                        *waits = v;
                    }
                }
            }
            _ => self.release(ids),
        }
    }

    /// Writes a snapshot when this one is not saved yet and `finishing` (a
    /// command's end, `serve` stopping), it was rebuilt, or it folded
    /// [`PERSIST_AFTER_COMMITS`] commits since the last. Best effort.
    pub async fn save_if_due(&mut self, store: &Store, workspace: &str, finishing: bool) {
        let now = (self.coverage.attempts, self.coverage.ledger);
        let due = match self.saved {
            Some(saved) if saved == now => false,
            None => true,
            Some(_) => finishing || self.unsaved_commits >= PERSIST_AFTER_COMMITS,
        };
        if !due || self.broken {
            return;
        }
        match snapshot::persist(store, workspace, &self.open, &self.coverage).await {
            Ok(()) => {
                self.saved = Some(now);
                self.unsaved_commits = 0;
            }
            Err(e) => tracing::warn!(workspace, "cannot save the open deliveries: {e}"),
        }
    }
}

fn rewritten(table: &str, followed: Followed) -> String {
    match followed {
        Followed::Rewritten(why) => format!("the {table} table: {why}"),
        Followed::Added { .. } => format!("the {table} table"),
    }
}

/// The attempts row a batch recorded, as the index folds it.
fn tried_of(row: &AttemptRecord) -> Tried {
    Tried {
        delivery_id: row.delivery_id.clone(),
        attempt: row.attempt,
        status: row.status.as_str().to_string(),
        attempted_at: row.attempted_at,
        next_attempt_at: row.next_attempt_at,
    }
}

/// A column cast to `to`; `None` when the batch lacks it.
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Option<Arc<dyn Array>> {
    let column = batch.column_by_name(name)?;
    arrow::compute::cast(column, to).ok()
}

fn text_at(column: &Option<Arc<dyn Array>>, row: usize) -> Option<&str> {
    let column = column.as_ref()?.as_string_opt::<i32>()?;
    column.is_valid(row).then(|| column.value(row))
}

fn micros_at(column: &Option<Arc<dyn Array>>, row: usize) -> Option<i64> {
    let column = column
        .as_ref()?
        .as_primitive_opt::<TimestampMicrosecondType>()?;
    column.is_valid(row).then(|| column.value(row))
}

fn number_at(column: &Option<Arc<dyn Array>>, row: usize) -> Option<i64> {
    let column = column.as_ref()?.as_primitive_opt::<Int64Type>()?;
    column.is_valid(row).then(|| column.value(row))
}

/// The open-able planned deliveries of a batch of ledger rows.
pub fn planned_rows(batch: &RecordBatch) -> Vec<Planned> {
    let text = |name| column(batch, name, &DataType::Utf8);
    let (kind, status) = (text("kind"), text("status"));
    let (ids, runs, flows, actions, payloads) = (
        text("delivery_id"),
        text("run_id"),
        text("flow"),
        text("action"),
        text("payload"),
    );
    let finished = column(
        batch,
        "finished_at",
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    );
    (0..batch.num_rows())
        .filter(|row| text_at(&kind, *row) == Some("delivery"))
        .filter_map(|row| {
            let held = match text_at(&status, row)? {
                "pending" => false,
                "held" => true,
                _ => return None,
            };
            Some(Planned {
                delivery_id: text_at(&ids, row)?.to_string(),
                run_id: text_at(&runs, row).unwrap_or_default().to_string(),
                flow: text_at(&flows, row).unwrap_or_default().to_string(),
                action: text_at(&actions, row).unwrap_or_default().to_string(),
                payload: text_at(&payloads, row).map(str::to_string),
                planned_at: micros_at(&finished, row).unwrap_or(0),
                held,
            })
        })
        .collect()
}

/// The rows of a batch of the attempts table.
pub fn tried_rows(batch: &RecordBatch) -> Vec<Tried> {
    let text = |name| column(batch, name, &DataType::Utf8);
    let time = |name| {
        column(
            batch,
            name,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
    };
    let (ids, status) = (text("delivery_id"), text("status"));
    let attempt = column(batch, "attempt", &DataType::Int64);
    let (at, next) = (time("attempted_at"), time("next_attempt_at"));
    (0..batch.num_rows())
        .filter_map(|row| {
            Some(Tried {
                delivery_id: text_at(&ids, row)?.to_string(),
                attempt: number_at(&attempt, row)?,
                status: text_at(&status, row)?.to_string(),
                attempted_at: micros_at(&at, row).unwrap_or(0),
                next_attempt_at: micros_at(&next, row),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(attempts: i64, ledger: i64, ids: (&str, &str)) -> Coverage {
        Coverage {
            attempts,
            ledger,
            attempts_id: ids.0.into(),
            ledger_id: ids.1.into(),
        }
    }

    #[test]
    fn an_index_follows_only_the_tables_it_was_built_from_and_never_backwards() {
        let held = coverage(5, 3, ("a", "l"));
        assert!(may_follow(&held, &coverage(5, 3, ("a", "l"))));
        assert!(may_follow(&held, &coverage(9, 4, ("a", "l"))));
        assert!(!may_follow(&held, &coverage(4, 3, ("a", "l"))));
        assert!(!may_follow(&held, &coverage(9, 4, ("a2", "l"))));
        assert!(!may_follow(&held, &coverage(9, 4, ("a", "l2"))));
    }

    #[test]
    fn ledger_rows_become_planned_deliveries_only_when_they_may_be_sent() {
        use crate::store::ledger::{DeliveryRecord, RunRecord, RunRows, run_batch};
        let delivery = |id: &str, status: &str| DeliveryRecord {
            delivery_id: id.into(),
            flow: "f".into(),
            action: "hook".into(),
            ordinal: 0,
            contact: "email:a@x".into(),
            variant: None,
            branch: Some(0),
            status: status.into(),
            reason: None,
            payload: Some("{}".into()),
        };
        let run = RunRecord {
            run_id: "r1".into(),
            trigger: "t".into(),
            from_version: -1,
            to_version: 0,
            started_at: 1,
            finished_at: 42,
            clock: 1,
            matched: 3,
            resolved: 3,
            unresolved: 0,
            dropped: 0,
            pending: 0,
            expired: 0,
            held: 1,
            error: None,
        };
        let deliveries = [
            delivery("p", "pending"),
            delivery("h", "held"),
            delivery("x", "held_out"),
        ];
        let rows = RunRows {
            deliveries: &deliveries,
            ..RunRows::default()
        };
        let planned: Vec<Planned> = run_batch(&run, &rows)
            .iter()
            .flat_map(planned_rows)
            .collect();
        let found: Vec<(&str, bool, i64)> = planned
            .iter()
            .map(|p| (p.delivery_id.as_str(), p.held, p.planned_at))
            .collect();
        assert_eq!(found, [("p", false, 42), ("h", true, 42)]);
        assert_eq!(planned[0].run_id, "r1");
    }
}
