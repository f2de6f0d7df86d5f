//! What the triggers are doing, for `tripwire triggers` and the API: each
//! trigger's schedule and cursor, and its run history read back from the
//! ledger's `runs` table.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::health::{Streak, current_streak};
use super::{TriggerFile, load_triggers};
use crate::config::Config;
use crate::project::FileError;
use crate::schedule::Schedule;
use crate::session::{SessionSpec, workspace_session};
use crate::sql::{QueryError, run_read_only};
use crate::store::ledger::cursor_app_id;
use crate::store::{Store, StoreError, TableKind, table};

/// The most runs one history request returns.
pub const MAX_RUNS: usize = 1_000;

/// The workspace a trigger runs in: its header's, or the only one configured.
pub fn workspace_of<'a>(config: &'a Config, trigger: &TriggerFile) -> Result<&'a str, String> {
    config
        .pick_workspace(trigger.workspace.as_deref())
        .map(|w| w.id.as_str())
        .map_err(|e| format!("{}: {e}", trigger.path.display()))
}

/// One JSON object per trigger file (of `workspace`, or all), with its cursor
/// and next scheduled time after `now`; files that do not parse come back as errors.
pub async fn trigger_rows(
    config: &Config,
    store: &Store,
    workspace: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Vec<Value>, Vec<FileError>), StoreError> {
    let (triggers, errors) = load_triggers(&config.project_dir);
    let mut rows = Vec::new();
    for trigger in &triggers {
        let runs_in = workspace_of(config, trigger).unwrap_or("?");
        if workspace.is_some_and(|w| w != runs_in) {
            continue;
        }
        let ledger = store.open(runs_in, TableKind::Ledger).await?;
        let (cursor, streak) = match &ledger {
            Some(ledger) => (
                table::app_progress(ledger, &cursor_app_id(&trigger.name)).await?,
                current_streak(ledger, &trigger.name, config.max_run_failures)
                    .await
                    .map_err(|e| StoreError::delta(ledger.table_url(), e))?,
            ),
            None => (None, Streak::default()),
        };
        let schedule = trigger
            .schedule
            .as_deref()
            .unwrap_or(&config.default_schedule);
        let next_run = schedule
            .parse::<Schedule>()
            .ok()
            .and_then(|s| s.next_after(now))
            .filter(|_| trigger.active);
        rows.push(json!({
            "trigger": trigger.name,
            "workspace": runs_in,
            "schedule": schedule,
            "active": trigger.active,
            "cursor": cursor,
            "next_run": next_run.map(|t| t.to_rfc3339()),
            "paused": streak.paused(config.max_run_failures),
            "failures": streak.failures,
            "last_error": streak.last_error,
            "description": trigger.description,
        }));
    }
    Ok((rows, errors))
}

/// The latest runs of `workspace` (of one trigger, if named), newest first.
pub async fn recent_runs(
    config: &Config,
    store: &Store,
    workspace: &str,
    trigger: Option<&str>,
    limit: usize,
) -> Result<Vec<Value>, QueryError> {
    let spec = SessionSpec {
        store,
        workspace,
        now: Utc::now(),
        identity_ttl: config.identity_ttl,
        events: None,
    };
    let ctx = workspace_session(&spec).await?;
    let filter = trigger
        .map(|t| format!("WHERE trigger = '{}'", t.replace('\'', "''")))
        .unwrap_or_default();
    let sql = format!(
        "SELECT * FROM runs {filter} ORDER BY finished_at DESC, run_id LIMIT {}",
        limit.min(MAX_RUNS)
    );
    let batches = run_read_only(&ctx, &sql).await?;
    json_rows(&batches).map_err(QueryError::Engine)
}

/// Arrow rows as JSON objects.
pub fn json_rows(batches: &[arrow::array::RecordBatch]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::ArrayWriter::new(&mut out);
        for batch in batches {
            writer.write(batch).map_err(|e| e.to_string())?;
        }
        writer.finish().map_err(|e| e.to_string())?;
    }
    if out.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&out).map_err(|e| e.to_string())
}
