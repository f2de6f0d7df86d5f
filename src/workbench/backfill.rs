//! `tripwire backfill TRIGGER --since 7d [--live]` (docs/reference.md
//! "Backfills"): the trigger over the events from before it started, sent
//! within `since` before the clock. By default a shadow: every delivery its
//! flows would make is recorded as `shadow` and nothing is sent, so a new
//! trigger can be watched before it goes live; `--live` sends them, under
//! the flows' `max_deliveries_per_run`. It never re-reads a window the
//! trigger committed (it reads up to where the trigger started), moves no
//! cursor, and runs once per mode (`txn("backfill:<trigger>:<mode>")`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use deltalake_core::DeltaTable;

use crate::flow::FlowSetup;
use crate::identity::index::IndexCache;
use crate::run::{RunError, RunRequest, Scope, evaluate_and_plan, run_session, run_trigger};
use crate::session::{SessionSpec, workspace_session};
use crate::sql::run_read_only;
use crate::store::commit::{Committed, Once, commit};
use crate::store::ledger::{RunRecord, RunRows, backfill_batch, cursor_app_id, id_of};
use crate::store::stamp::stamp_unstamped;
use crate::store::{Store, StoreError, TableKind, table};
use crate::trigger::TriggerFile;
use crate::window::{Backfill, Window};

/// What a backfill did.
#[derive(Debug, Clone)]
pub struct Backfilled {
    pub run: RunRecord,
    pub matches: usize,
    /// Deliveries by status (`shadow`, `pending`, `held`, `filtered`, …).
    pub planned: Vec<(String, usize)>,
    /// False when this range was backfilled in this mode before.
    pub committed: bool,
}

/// Backfills `trigger` in `workspace`.
pub async fn backfill(
    config: &crate::config::Config,
    store: &Store,
    workspace: &str,
    trigger: &TriggerFile,
    since: Duration,
    live: bool,
    now: DateTime<Utc>,
) -> Result<Backfilled, RunError> {
    let setup = FlowSetup::load(config, store, workspace).await?;
    let identities = IndexCache::new();
    let request = RunRequest {
        store,
        workspace,
        trigger,
        now,
        identity_ttl: config.identity_ttl,
        commit: true,
        whole_history: false,
        flows: &setup.flows,
        segments: &setup.segments,
        flow_errors: &setup.errors,
        max_failures: config.max_run_failures,
        identities: &identities,
    };
    let start = started_at(&request).await?;
    let mut events = store.open(workspace, TableKind::Events).await?;
    if let Some(table) = events.as_mut() {
        stamp_unstamped(table).await?;
    }
    let mut ledger = store.open_or_create(workspace, TableKind::Ledger).await?;
    let index = match events.as_ref() {
        Some(table) => Some(identities.at(store, workspace, table).await?),
        None => None,
    };
    let mode = if live { "live" } else { "shadow" };
    let window = Window {
        from: -1,
        to: start,
    };
    let span = chrono::Duration::from_std(since).unwrap_or(chrono::Duration::MAX);
    let sent_after = now.checked_sub_signed(span);
    let run_id = id_of(&[
        workspace,
        &trigger.name,
        "backfill",
        mode,
        &start.to_string(),
        &since.as_secs().to_string(),
    ]);
    let scope = Scope {
        events: events.as_ref(),
        window,
        sent_after,
        run_id: &run_id,
        ledger: &ledger,
        waiting: &[],
        shadow: !live,
        identities: index.as_deref(),
    };
    let evaluated = match run_session(&request, &scope).await {
        Ok(ctx) => evaluate_and_plan(&request, &scope, &ctx).await,
        Err(message) => Err(message),
    };
    let (evaluation, deliveries) = evaluated.map_err(|message| RunError::Query {
        path: trigger.path.display().to_string(),
        message,
    })?;
    let started = now.timestamp_micros();
    let resolution = &evaluation.resolution;
    let run = RunRecord {
        run_id: run_id.clone(),
        trigger: trigger.name.clone(),
        from_version: window.from,
        to_version: window.to,
        started_at: started,
        finished_at: Utc::now().timestamp_micros(),
        clock: started,
        matched: evaluation.window_rows as i64,
        resolved: resolution.resolved,
        unresolved: resolution.unresolved,
        dropped: resolution.dropped + resolution.waiting.len() as i64,
        pending: 0,
        expired: 0,
        held: deliveries.iter().filter(|d| d.status == "held").count() as i64,
        error: None,
    };
    let rows = RunRows {
        matches: &resolution.matches,
        deliveries: &deliveries,
        ..RunRows::default()
    };
    let mut writer = Once {
        app_id: format!("backfill:{}:{mode}", trigger.name),
        version: start,
        batches: backfill_batch(&run, &rows),
    };
    let committed = commit(&mut ledger, &mut writer).await? != Committed::Nothing;
    Ok(Backfilled {
        matches: resolution.matches.len(),
        planned: by_status(&deliveries),
        committed,
        run,
    })
}

/// Where the trigger's committed windows begin: what a backfill reads up
/// to. A trigger that never ran is started first, at the current version,
/// as its first run would start it.
async fn started_at(request: &RunRequest<'_>) -> Result<i64, RunError> {
    let ledger = request
        .store
        .open_or_create(request.workspace, TableKind::Ledger)
        .await?;
    let name = &request.trigger.name;
    if table::app_progress(&ledger, &cursor_app_id(name))
        .await?
        .is_none()
    {
        let mut starting = request.trigger.clone();
        starting.backfill = Backfill::Nothing;
        let start = RunRequest {
            trigger: &starting,
            ..*request
        };
        run_trigger(&start).await?;
    }
    first_window_start(request, &ledger)
        .await
        .map_err(RunError::from)
}

/// The lowest `from_version` of the trigger's committed runs.
async fn first_window_start(
    request: &RunRequest<'_>,
    ledger: &DeltaTable,
) -> Result<i64, StoreError> {
    let spec = SessionSpec {
        store: request.store,
        workspace: request.workspace,
        now: request.now,
        identity_ttl: request.identity_ttl,
        events: None,
    };
    let failed = |e: &dyn std::fmt::Display| StoreError::delta(ledger.table_url(), e);
    let ctx = workspace_session(&spec).await.map_err(|e| failed(&e))?;
    let sql = format!(
        "SELECT min(from_version) AS start FROM runs WHERE trigger = '{}' AND error IS NULL",
        request.trigger.name.replace('\'', "''")
    );
    let batches = run_read_only(&ctx, &sql).await.map_err(|e| failed(&e))?;
    use arrow::array::{Array, AsArray};
    let start = batches.first().and_then(|b| {
        let column = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).ok()?;
        let column = column.as_primitive::<arrow::datatypes::Int64Type>();
        column.is_valid(0).then(|| column.value(0))
    });
    start.ok_or_else(|| failed(&"the trigger has no committed run to start from"))
}

fn by_status(deliveries: &[crate::store::ledger::DeliveryRecord]) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for d in deliveries {
        *counts.entry(d.status.clone()).or_default() += 1;
    }
    counts.into_iter().collect()
}
