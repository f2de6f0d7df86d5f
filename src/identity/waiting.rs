//! The ledger's open pending rows (rows waiting for an identity that no run
//! has settled yet), kept by a process between its ticks
//! (docs/architecture.md "Ticks"). The ledger only grows: reading every
//! trigger's open rows from it on each tick cost its whole history. Read
//! whole once, the rows are then caught up from the files the ledger's
//! later commits added (`store::follow`): a `pending` row opens, a
//! `settled` row closes it. When following cannot tell (a commit removed
//! rows, a log entry is gone, another table is at the path, too many
//! commits), or the ledger handle is older than what is kept, they are
//! read whole again.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use deltalake_core::DeltaTable;

use super::pending::{OpenRow, open_rows, open_rows_in};
use crate::sql::QueryError;
use crate::store::follow::{self, Followed};
use crate::store::ledger::PendingRecord;
use crate::store::table::{table_id, version};

/// The ledger columns a followed file is read for.
const COLUMNS: &[&str] = &[
    "kind",
    "trigger",
    "pending_id",
    "row",
    "wait_until",
    "email",
    "user_id",
    "client_id",
    "clock",
];

/// The open pending rows of one ledger at one version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Waiting {
    table_id: String,
    version: i64,
    /// Per trigger.
    open: HashMap<String, Open>,
}

/// A trigger's open rows, as each tick hands them out: shared, oldest
/// first (by the clock of the run that deferred them, then pending id).
pub type OpenRows = Arc<[Arc<PendingRecord>]>;

/// One trigger's open rows (equal when their rows are, however ordered
/// so far).
#[derive(Debug, Clone, Default)]
struct Open {
    /// Per pending id: the row and the clock of the run that deferred it.
    rows: HashMap<String, (i64, Arc<PendingRecord>)>,
    /// The rows in the order handed out, kept until one opens or settles.
    /// Sorting and copying every row for every tick had cost a run over a
    /// ledger with 84k rows waiting more than its query.
    ordered: Option<OpenRows>,
}

impl PartialEq for Open {
    fn eq(&self, other: &Open) -> bool {
        self.rows == other.rows
    }
}

impl Open {
    fn ordered(&mut self) -> OpenRows {
        let rows = &self.rows;
        let ordered = self.ordered.get_or_insert_with(|| {
            let mut oldest_first: Vec<&(i64, Arc<PendingRecord>)> = rows.values().collect();
            // Pending ids are the map's keys: no two rows compare equal.
            oldest_first
                .sort_unstable_by(|a, b| (a.0, &a.1.pending_id).cmp(&(b.0, &b.1.pending_id)));
            oldest_first.into_iter().map(|(_, r)| r.clone()).collect()
        });
        ordered.clone()
    }
}

impl Waiting {
    /// Every trigger's open rows of `ledger`, read whole.
    pub async fn read(ledger: &DeltaTable) -> Result<Waiting, QueryError> {
        let mut waiting = Waiting {
            table_id: table_id(ledger)?,
            version: version(ledger),
            open: HashMap::new(),
        };
        for row in open_rows(ledger, None).await? {
            waiting.open_row(row);
        }
        Ok(waiting)
    }

    /// The rows kept, brought to `ledger`'s version; `None` when they
    /// cannot be (read them whole).
    pub async fn caught_up(mut self, ledger: &DeltaTable) -> Result<Option<Waiting>, QueryError> {
        let to = version(ledger);
        if self.table_id != table_id(ledger)? || to < self.version {
            return Ok(None);
        }
        if to == self.version {
            return Ok(Some(self));
        }
        let log = ledger.log_store();
        let followed =
            follow::between(log.as_ref(), self.version, Some(to), &self.table_id).await?;
        let files = match followed {
            Followed::Added { files, .. } => files,
            Followed::Rewritten(why) => {
                tracing::debug!(ledger = %ledger.table_url(), "reading open pending rows whole: {why}");
                return Ok(None);
            }
        };
        let mut batches = Vec::new();
        for file in &files {
            batches.extend(follow::read_columns(log.as_ref(), file, COLUMNS).await?);
        }
        // Rows a commit opens before the rows any commit settles.
        for batch in &batches {
            for row in rows_of_kind(batch, "pending")? {
                self.open_row(row);
            }
        }
        for batch in &batches {
            for row in rows_of_kind(batch, "settled")? {
                self.settle(&row.trigger, &row.record.pending_id);
            }
        }
        self.version = to;
        Ok(Some(self))
    }

    /// `triggers`' open rows, each trigger's oldest first (by the clock of
    /// the run that deferred them, then pending id).
    pub fn of(&mut self, triggers: &[&str]) -> HashMap<String, OpenRows> {
        let mut of = HashMap::new();
        for trigger in triggers {
            let Some(open) = self.open.get_mut(*trigger).filter(|o| !o.rows.is_empty()) else {
                continue;
            };
            of.insert(trigger.to_string(), open.ordered());
        }
        of
    }

    fn open_row(&mut self, row: OpenRow) {
        let open = self.open.entry(row.trigger).or_default();
        open.ordered = None;
        let id = row.record.pending_id.clone();
        open.rows.insert(id, (row.clock, Arc::new(row.record)));
    }

    fn settle(&mut self, trigger: &str, pending_id: &str) {
        if let Some(open) = self.open.get_mut(trigger)
            && open.rows.remove(pending_id).is_some()
        {
            open.ordered = None;
        }
    }
}

/// The open pending rows of every ledger a process runs against, by table URL.
#[derive(Debug, Default)]
pub struct WaitingCache {
    ledgers: tokio::sync::Mutex<HashMap<String, Waiting>>,
}

impl WaitingCache {
    /// `triggers`' open rows of `ledger` at its loaded version: the kept
    /// rows caught up, or read whole.
    pub async fn open(
        &self,
        ledger: &DeltaTable,
        triggers: &[&str],
    ) -> Result<HashMap<String, OpenRows>, QueryError> {
        let key = ledger.table_url().to_string();
        let mut ledgers = self.ledgers.lock().await;
        let kept = match ledgers.remove(&key) {
            Some(kept) => kept.caught_up(ledger).await?,
            None => None,
        };
        let mut waiting = match kept {
            Some(waiting) => waiting,
            None => Waiting::read(ledger).await?,
        };
        let open = waiting.of(triggers);
        ledgers.insert(key, waiting);
        Ok(open)
    }
}

/// The rows of `batch` (a followed file's columns) whose kind is `kind`.
fn rows_of_kind(batch: &RecordBatch, kind: &str) -> Result<Vec<OpenRow>, QueryError> {
    let Some(kinds) = batch.column_by_name("kind") else {
        return Ok(Vec::new());
    };
    let kinds = cast(kinds, &DataType::Utf8).map_err(|e| QueryError::Engine(e.to_string()))?;
    let kinds = kinds.as_string::<i32>();
    let rows = (0..batch.num_rows()).filter(|i| kinds.is_valid(*i) && kinds.value(*i) == kind);
    open_rows_in(batch, rows)
}
