//! `tripwire diff TRIGGER [--since 7d]` (docs/reference.md "Diffs"): what an
//! edit to a trigger file would change. The edited query runs over the
//! windows of the trigger's committed runs within `since` (read by the rows'
//! commit stamps, so old log files need not exist), each at its run's
//! clock, and its matches are compared with the ones those runs committed:
//! contacts added, removed and unchanged. Nothing is committed.

use std::collections::BTreeSet;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::identity::index::{AsOf, IndexCache};
use crate::session::{SessionSpec, workspace_session};
use crate::sql::{QueryError, run_read_only};
use crate::store::{Store, TableKind};
use crate::trigger::TriggerFile;
use crate::trigger::evaluate::evaluate;
use crate::window::{Window, new_events};

/// A match's key as a diff compares it: the contact, and its event id.
pub type Key = (String, Option<String>);

/// What the edit changes over the runs compared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiffReport {
    pub runs: usize,
    /// The versions the compared runs covered, lowest to highest.
    pub versions: Option<(i64, i64)>,
    pub added: Vec<Key>,
    pub removed: Vec<Key>,
    pub unchanged: usize,
}

/// One committed run of the trigger: its window and clock.
struct CommittedRun {
    run_id: String,
    window: Window,
    clock: DateTime<Utc>,
}

/// Compares the edited `trigger` with its committed runs since `now - since`.
pub async fn diff(
    config: &Config,
    store: &Store,
    workspace: &str,
    trigger: &TriggerFile,
    since: Duration,
    now: DateTime<Utc>,
) -> Result<DiffReport, String> {
    let span = chrono::Duration::from_std(since).unwrap_or(chrono::Duration::MAX);
    let after = now
        .checked_sub_signed(span)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let spec = SessionSpec {
        store,
        workspace,
        now,
        identity_ttl: config.identity_ttl,
        events: None,
    };
    let ctx = workspace_session(&spec).await.map_err(|e| e.to_string())?;
    let runs = committed_runs(&ctx, &trigger.name, after)
        .await
        .map_err(|e| e.to_string())?;
    let events = store
        .open(workspace, TableKind::Events)
        .await
        .map_err(|e| e.to_string())?;
    let index = match events.as_ref() {
        Some(table) => Some(
            IndexCache::new()
                .at(store, workspace, table)
                .await
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let mut report = DiffReport {
        runs: runs.len(),
        ..DiffReport::default()
    };
    for run in &runs {
        let before = committed_keys(&ctx, &run.run_id)
            .await
            .map_err(|e| e.to_string())?;
        let spec = SessionSpec {
            now: run.clock,
            events: events.as_ref(),
            ..spec.clone()
        };
        let run_ctx = workspace_session(&spec).await.map_err(|e| e.to_string())?;
        let window = new_events(events.as_ref(), run.window, None).map_err(|e| e.to_string())?;
        run_ctx
            .register_table("new_events", window)
            .map_err(|e| e.to_string())?;
        let at = AsOf::new(run.clock, config.identity_ttl);
        let edited = evaluate(&run_ctx, trigger, &[], index.as_deref().map(|i| (i, at))).await?;
        let after: BTreeSet<Key> = edited
            .resolution
            .matches
            .iter()
            .map(|m| (m.contact.clone(), m.event_id.clone()))
            .collect();
        report.added.extend(after.difference(&before).cloned());
        report.removed.extend(before.difference(&after).cloned());
        report.unchanged += after.intersection(&before).count();
        report.versions = Some(match report.versions {
            None => (run.window.from, run.window.to),
            Some((low, high)) => (low.min(run.window.from), high.max(run.window.to)),
        });
    }
    Ok(report)
}

async fn committed_runs(
    ctx: &datafusion::prelude::SessionContext,
    trigger: &str,
    after: DateTime<Utc>,
) -> Result<Vec<CommittedRun>, QueryError> {
    let sql = format!(
        "SELECT run_id, from_version, to_version, CAST(clock AS BIGINT) AS clock FROM runs
         WHERE trigger = '{}' AND error IS NULL AND to_version > from_version
           AND finished_at > TIMESTAMP '{}'
         ORDER BY to_version",
        trigger.replace('\'', "''"),
        after.format("%Y-%m-%dT%H:%M:%S%.6fZ")
    );
    let batches = run_read_only(ctx, &sql).await?;
    let mut runs = Vec::new();
    for batch in &batches {
        let number = |i: usize| cast_i64(batch, i);
        let (from, to, clock) = (number(1)?, number(2)?, number(3)?);
        let ids = text(batch, 0)?;
        for (i, id) in ids.into_iter().enumerate() {
            runs.push(CommittedRun {
                run_id: id.unwrap_or_default(),
                window: Window {
                    from: from.value(i),
                    to: to.value(i),
                },
                clock: DateTime::from_timestamp_micros(clock.value(i)).unwrap_or_default(),
            });
        }
    }
    Ok(runs)
}

async fn committed_keys(
    ctx: &datafusion::prelude::SessionContext,
    run_id: &str,
) -> Result<BTreeSet<Key>, QueryError> {
    let sql = format!(
        "SELECT contact, event_id FROM matches WHERE run_id = '{}'",
        run_id.replace('\'', "''")
    );
    let batches = run_read_only(ctx, &sql).await?;
    let mut keys = BTreeSet::new();
    for batch in &batches {
        let (contacts, ids) = (text(batch, 0)?, text(batch, 1)?);
        for (contact, id) in contacts.into_iter().zip(ids) {
            keys.insert((contact.unwrap_or_default(), id));
        }
    }
    Ok(keys)
}

fn text(batch: &RecordBatch, i: usize) -> Result<Vec<Option<String>>, QueryError> {
    let column = arrow::compute::cast(batch.column(i), &DataType::Utf8)
        .map_err(|e| QueryError::Engine(e.to_string()))?;
    Ok(column
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

fn cast_i64(
    batch: &RecordBatch,
    i: usize,
) -> Result<arrow::array::PrimitiveArray<Int64Type>, QueryError> {
    let column = arrow::compute::cast(batch.column(i), &DataType::Int64)
        .map_err(|e| QueryError::Engine(e.to_string()))?;
    Ok(column.as_primitive::<Int64Type>().clone())
}
