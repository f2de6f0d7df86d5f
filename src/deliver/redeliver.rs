//! `redeliver`: a dead or failed delivery gets a `pending` row in its
//! history, which makes it due at once with a fresh backoff and retry
//! period. Anything else (unknown, delivered, never to be delivered) is
//! refused, and then nothing is reset.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use deltalake_core::DeltaTable;

use super::DeliverError;
use super::state::{self, Current};
use crate::sql::ledger::state_context;
use crate::store::commit::{Append, Plan, Writer, commit};
use crate::store::ledger::attempts::{AttemptRecord, Status, attempts_batch};
use crate::store::{Store, TableKind};

/// Resets `ids` to pending at `now`; returns how many were reset.
pub async fn redeliver(
    store: &Store,
    workspace: &str,
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<usize, DeliverError> {
    let Some(ledger) = store.open(workspace, TableKind::Ledger).await? else {
        return Err(DeliverError::Redeliver(format!(
            "workspace {workspace:?} has no deliveries yet"
        )));
    };
    let mut attempts = store.open_or_create(workspace, TableKind::Attempts).await?;
    let mut writer = Resets {
        ledger: &ledger,
        ids: ids.iter().map(String::as_str).collect(),
        now,
        count: 0,
    };
    commit(&mut attempts, &mut writer).await?;
    Ok(writer.count)
}

/// The reset rows of `ids`, decided on the attempts table as it is.
struct Resets<'a> {
    ledger: &'a DeltaTable,
    ids: Vec<&'a str>,
    now: DateTime<Utc>,
    count: usize,
}

impl Writer for Resets<'_> {
    type Error = DeliverError;

    async fn plan(&mut self, attempts: &DeltaTable) -> Result<Plan, DeliverError> {
        let ctx = state_context(self.ledger, attempts).await?;
        let current = state::current(&ctx, &self.ids).await?;
        let rows = resets(&self.ids, &current, self.now).map_err(DeliverError::Redeliver)?;
        self.count = rows.len();
        Ok(Plan::Append(Append {
            batches: vec![attempts_batch(&rows)],
            txns: Vec::new(),
        }))
    }
}

/// The reset rows, or every reason an id cannot be redelivered.
pub fn resets(
    ids: &[&str],
    current: &HashMap<String, Current>,
    now: DateTime<Utc>,
) -> Result<Vec<AttemptRecord>, String> {
    let mut rows: Vec<AttemptRecord> = Vec::new();
    let mut problems = Vec::new();
    for id in ids {
        if rows.iter().any(|r| r.delivery_id == *id) {
            continue;
        }
        let Some(state) = current.get(*id) else {
            problems.push(format!("{id}: no such delivery"));
            continue;
        };
        match state.status.as_str() {
            "failed" | "dead" => rows.push(AttemptRecord {
                delivery_id: id.to_string(),
                attempt: state.last_attempt + 1,
                status: Status::Pending,
                http_status: None,
                error: None,
                attempted_at: now.timestamp_micros(),
                next_attempt_at: Some(now.timestamp_micros()),
            }),
            "delivered" => problems.push(format!("{id}: delivered already")),
            "pending" => problems.push(format!("{id}: pending already (delivered when due)")),
            "held" => problems.push(format!(
                "{id}: held over its flow's max_deliveries_per_run (release its run with `tripwire release`)"
            )),
            other => problems.push(format!("{id}: {other}, so it is never delivered")),
        }
    }
    match problems.is_empty() {
        true => Ok(rows),
        false => Err(format!(
            "nothing redelivered: {}; only failed or dead deliveries can be redelivered",
            problems.join("; ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: &str, last_attempt: i64) -> Current {
        Current {
            status: status.into(),
            last_attempt,
        }
    }

    #[test]
    fn only_failed_and_dead_deliveries_are_reset() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let current: HashMap<String, Current> = [
            ("dead", state("dead", 3)),
            ("failed", state("failed", 1)),
            ("done", state("delivered", 2)),
            ("held", state("held_out", 0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let rows = resets(&["dead", "failed", "dead"], &current, now).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].attempt, rows[0].status), (4, Status::Pending));
        assert_eq!(rows[1].attempt, 2);
        let refused = resets(&["dead", "done", "held", "nope"], &current, now).unwrap_err();
        assert!(refused.contains("done: delivered already"), "{refused}");
        assert!(refused.contains("held: held_out"), "{refused}");
        assert!(refused.contains("nope: no such delivery"), "{refused}");
    }
}
