//! One trigger run, end to end (docs/architecture.md "Runs"): pick the
//! window `(cursor, watermark]`, evaluate the trigger over it (`trigger`),
//! plan what its flows do with the matches (`flow`), and commit the run,
//! its matches, its deliveries and the new cursor in one ledger commit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deltalake_core::DeltaTable;

use crate::flow::Flow;
use crate::flow::plan::{PlanRequest, plan_deliveries};
use crate::flow::segment::SegmentSource;
use crate::identity::index::{AsOf, IdentityIndex, IndexCache};
use crate::identity::pending::{self, Deferral};
use crate::project::FileError;
use crate::session::{SessionSpec, workspace_session};
use crate::store::commit::{Always, Committed, Once, commit};
use crate::store::ledger::{
    DeliveryRecord, MatchRecord, PendingRecord, RunRecord, RunRows, Settled, cursor_app_id, id_of,
    run_batch,
};
use crate::store::stamp::stamp_unstamped;
use crate::store::{Store, StoreError, TableKind, table};
use crate::trigger::TriggerFile;
use crate::trigger::evaluate::{Evaluation, evaluate};
use crate::trigger::health::current_streak;
use crate::window::{Window, new_events, window_for};

/// Why a run did not commit.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The trigger failed `max_run_failures` runs in a row: it waits for
    /// `tripwire resume`.
    #[error(
        "{trigger}: paused after {failures} failed runs in a row (last error: {error}); \
         fix the cause, then `tripwire resume {trigger}` (or `--skip` to skip the failing window)"
    )]
    Paused {
        trigger: String,
        failures: u32,
        error: String,
    },
    /// The trigger's SQL failed to plan or run (the analyst's to fix).
    #[error("{path}: {message}")]
    Query { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What to run, and against what clock.
pub struct RunRequest<'a> {
    pub store: &'a Store,
    pub workspace: &'a str,
    pub trigger: &'a TriggerFile,
    pub now: DateTime<Utc>,
    pub identity_ttl: Duration,
    /// `false` for a preview: read the window, commit nothing.
    pub commit: bool,
    /// Preview every event, not just the new ones.
    pub whole_history: bool,
    /// The project's flows (those of other triggers are ignored).
    pub flows: &'a [Flow],
    /// The segments the flows may name.
    pub segments: &'a [(String, SegmentSource)],
    /// Flow files that do not parse: one that may listen to this trigger
    /// stops it from committing (its deliveries would be lost).
    pub flow_errors: &'a [FileError],
    /// Failed runs in a row that pause the trigger (0: never).
    pub max_failures: u32,
    /// The workspace's identity index, shared by the runs of the process.
    pub identities: &'a IndexCache,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run: RunRecord,
    /// Rows this run deferred until an identity arrives.
    pub pending: Vec<PendingRecord>,
    pub matches: Vec<MatchRecord>,
    /// What the flows planned for the matches (committed with the run).
    pub deliveries: Vec<DeliveryRecord>,
    pub status: RunStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// The run and its cursor were committed.
    Committed,
    /// A trigger's first run without a backfill: its cursor starts at the
    /// table's current version, matching nothing from before.
    Started,
    /// No events arrived since the last run: nothing to do.
    NothingNew,
    /// Another runner committed this window first.
    AlreadyCommitted,
    /// A preview: nothing was written.
    Preview,
}

impl RunOutcome {
    /// Whether the run had a window to read (false: no new events).
    pub fn matched_anything_new(&self) -> bool {
        self.status != RunStatus::NothingNew
    }
}

/// One line per run: its window, counts and what became of it.
impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let run = &self.run;
        let status = match self.status {
            RunStatus::Committed => format!("committed run {}", run.run_id),
            RunStatus::NothingNew => {
                return write!(
                    f,
                    "{}: no new events since version {}",
                    run.trigger, run.from_version
                );
            }
            RunStatus::Started => {
                return write!(
                    f,
                    "{}: starts at version {}: it fires for events stored from now on \
                     (a `-- backfill: all` or `-- backfill: 7d` header reads history too)",
                    run.trigger, run.to_version
                );
            }
            RunStatus::AlreadyCommitted => "another runner committed this window first".into(),
            RunStatus::Preview => "preview, nothing committed".into(),
        };
        let mut unresolved = format!("{} dropped", run.dropped);
        if run.pending > 0 {
            unresolved.push_str(&format!(", {} waiting for an identity", run.pending));
        }
        if run.expired > 0 {
            unresolved.push_str(&format!(", {} expired waiting", run.expired));
        }
        let held = match run.held {
            0 => String::new(),
            n => format!(", {n} held over a flow's max_deliveries_per_run"),
        };
        write!(
            f,
            "{}: versions ({}, {}]: {} rows, {} resolved, {} unresolved ({unresolved}) → {} matches, {} deliveries planned{held}; {status}",
            run.trigger,
            run.from_version,
            run.to_version,
            run.matched,
            run.resolved,
            run.unresolved,
            self.matches.len(),
            self.deliveries
                .iter()
                .filter(|d| d.status == "pending")
                .count()
        )
    }
}

/// Runs `request.trigger` once.
#[tracing::instrument(name = "run", skip_all, fields(trigger = %request.trigger.name, workspace = request.workspace))]
pub async fn run_trigger(request: &RunRequest<'_>) -> Result<RunOutcome, RunError> {
    if request.commit
        && let Some(broken) =
            crate::flow::blocking_error(request.flow_errors, &request.trigger.name)
    {
        return Err(RunError::Query {
            path: request.trigger.path.display().to_string(),
            message: format!("not run while a flow file that may listen to it is broken: {broken}"),
        });
    }
    panic_for_tests(&request.trigger.name);
    let started_at = Utc::now().timestamp_micros();
    let mut events = request
        .store
        .open(request.workspace, TableKind::Events)
        .await?;
    if let Some(table) = events.as_mut() {
        stamp_unstamped(table).await?;
    }
    let mut ledger = request
        .store
        .open_or_create(request.workspace, TableKind::Ledger)
        .await?;
    if request.commit && ledger.version().is_some() {
        refuse_when_paused(request, &ledger).await?;
    }
    let identities = match events.as_ref() {
        Some(table) => Some(
            request
                .identities
                .at(request.store, request.workspace, table)
                .await?,
        ),
        None => None,
    };
    let app_id = cursor_app_id(&request.trigger.name);
    let cursor = table::app_progress(&ledger, &app_id).await?;
    let watermark = events
        .as_ref()
        .and_then(DeltaTable::version)
        .map_or(-1, |v| v as i64);
    let (window, sent_after) = match request.whole_history {
        true => (
            Window {
                from: -1,
                to: watermark,
            },
            None,
        ),
        false => window_for(cursor, watermark, request.trigger.backfill, request.now),
    };
    let mut run = RunRecord {
        run_id: run_id(request.workspace, &request.trigger.name, window),
        trigger: request.trigger.name.clone(),
        from_version: window.from,
        to_version: window.to,
        started_at,
        finished_at: started_at,
        clock: request.now.timestamp_micros(),
        matched: 0,
        resolved: 0,
        unresolved: 0,
        dropped: 0,
        pending: 0,
        expired: 0,
        held: 0,
        error: None,
    };
    // A first run commits its cursor even over an empty window, after its
    // SQL and flows were tried on it: a broken trigger fails from the start.
    let starts = cursor.is_none() && !request.whole_history;
    if window.is_empty() && !starts {
        let status = match request.commit {
            false => RunStatus::Preview,
            true => RunStatus::NothingNew,
        };
        return Ok(RunOutcome {
            run,
            pending: Vec::new(),
            matches: Vec::new(),
            deliveries: Vec::new(),
            status,
        });
    }
    // Rows that waited for an identity come back in every run until settled
    // (not in a preview of all history, which re-reads their events).
    let waiting = match (request.whole_history, ledger.version()) {
        (false, Some(_)) => pending::open(&ledger, &request.trigger.name)
            .await
            .map_err(|e| StoreError::delta(ledger.table_url(), e))?,
        _ => Vec::new(),
    };
    let run_id = run.run_id.clone();
    let scope = Scope {
        events: events.as_ref(),
        window,
        sent_after,
        run_id: &run_id,
        ledger: &ledger,
        waiting: &waiting,
        shadow: false,
        identities: identities.as_deref(),
    };
    let evaluated = evaluate_and_plan(request, &scope).await;
    let (evaluation, deliveries) = match evaluated {
        Ok(evaluated) => evaluated,
        Err(message) => {
            run.error = Some(message.clone());
            run.finished_at = Utc::now().timestamp_micros();
            if request.commit {
                // Recorded for the history, without moving the cursor.
                run.run_id = format!("{}-failed-{}", run.run_id, run.started_at);
                let rows = RunRows::default();
                commit(&mut ledger, &mut Always(run_batch(&run, &rows))).await?;
            }
            return Err(RunError::Query {
                path: request.trigger.path.display().to_string(),
                message,
            });
        }
    };
    let deferral = pending::defer(
        &evaluation.resolution.waiting,
        &evaluation.origins,
        &waiting.iter().map(|p| p.wait_until).collect::<Vec<_>>(),
        request.trigger.wait_for_identity,
        request.now,
    );
    let deferred = pending::deferred(
        &evaluation.resolution.rows,
        &deferral.defer,
        &run_id,
        pending::wait_until(request.now, request.trigger.wait_for_identity),
    )
    .map_err(|e| StoreError::delta(ledger.table_url(), e))?;
    let settled = settlements(&waiting, &evaluation, &deferral);
    count(&mut run, &evaluation, &deferral, &settled);
    run.held = deliveries.iter().filter(|d| d.status == "held").count() as i64;
    run.finished_at = Utc::now().timestamp_micros();
    let matches = evaluation.resolution.matches;
    if !request.commit {
        return Ok(RunOutcome {
            run,
            pending: deferred,
            matches,
            deliveries,
            status: RunStatus::Preview,
        });
    }
    pause_before_commit_for_tests();
    let rows = RunRows {
        matches: &matches,
        deliveries: &deliveries,
        pending: &deferred,
        settled: &settled,
    };
    let mut writer = Once {
        app_id,
        version: window.to,
        batches: run_batch(&run, &rows),
    };
    let status = match commit(&mut ledger, &mut writer).await? {
        Committed::Version(_) if window.is_empty() => RunStatus::Started,
        Committed::Version(_) => RunStatus::Committed,
        Committed::Nothing => RunStatus::AlreadyCommitted,
    };
    Ok(RunOutcome {
        run,
        pending: deferred,
        matches,
        deliveries,
        status,
    })
}

/// A trigger that failed `max_failures` runs in a row does not run.
async fn refuse_when_paused(request: &RunRequest<'_>, ledger: &DeltaTable) -> Result<(), RunError> {
    let name = &request.trigger.name;
    let streak = current_streak(ledger, name, request.max_failures)
        .await
        .map_err(|e| StoreError::delta(ledger.table_url(), e))?;
    match streak.paused(request.max_failures) {
        false => Ok(()),
        true => Err(RunError::Paused {
            trigger: name.clone(),
            failures: streak.failures,
            error: streak.last_error.unwrap_or_default(),
        }),
    }
}

/// Runs `request.trigger` once, as [`run_trigger`], but a panic inside the
/// run is caught and recorded as a failed run (so the trigger is retried,
/// and paused if it keeps failing) instead of unwinding into the caller.
pub async fn run_trigger_caught(request: &RunRequest<'_>) -> Result<RunOutcome, RunError> {
    use futures::FutureExt as _;
    match std::panic::AssertUnwindSafe(run_trigger(request))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            record_panic(request, &message).await?;
            Err(RunError::Query {
                path: request.trigger.path.display().to_string(),
                message: format!("the run panicked: {message}"),
            })
        }
    }
}

/// The text a panic carried.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// A failed run row for a run that panicked (its window unknown: -1, -1).
async fn record_panic(request: &RunRequest<'_>, message: &str) -> Result<(), StoreError> {
    if !request.commit {
        return Ok(());
    }
    let mut ledger = request
        .store
        .open_or_create(request.workspace, TableKind::Ledger)
        .await?;
    let at = Utc::now().timestamp_micros();
    let run = RunRecord {
        run_id: format!("{}-panicked-{at}", request.trigger.name),
        trigger: request.trigger.name.clone(),
        from_version: -1,
        to_version: -1,
        started_at: at,
        finished_at: at,
        clock: request.now.timestamp_micros(),
        matched: 0,
        resolved: 0,
        unresolved: 0,
        dropped: 0,
        pending: 0,
        expired: 0,
        held: 0,
        error: Some(format!("the run panicked: {message}")),
    };
    commit(
        &mut ledger,
        &mut Always(run_batch(&run, &RunRows::default())),
    )
    .await
    .map(|_| ())
}

/// How this run ends earlier pending rows: resolved (they fire with it),
/// expired (their wait is over), or expired because they no longer decode
/// into the trigger's query.
fn settlements(
    waiting: &[PendingRecord],
    evaluation: &Evaluation,
    deferral: &Deferral,
) -> Vec<(String, Settled)> {
    let decoded: std::collections::HashSet<usize> =
        evaluation.origins.iter().flatten().copied().collect();
    let undecodable = (0..waiting.len()).filter(|i| !decoded.contains(i));
    let resolved = deferral.resolved.iter().map(|i| (*i, Settled::Resolved));
    let expired = deferral
        .expired
        .iter()
        .copied()
        .chain(undecodable)
        .map(|i| (i, Settled::Expired));
    resolved
        .chain(expired)
        .map(|(i, how)| (waiting[i].pending_id.clone(), how))
        .collect()
}

/// The run's counts: `matched` counts the window's rows; pending rows
/// resolved now count as resolved, still waiting ones not again.
fn count(
    run: &mut RunRecord,
    evaluation: &Evaluation,
    deferral: &Deferral,
    settled: &[(String, Settled)],
) {
    let resolution = &evaluation.resolution;
    let still_waiting = resolution
        .waiting
        .iter()
        .filter(|p| evaluation.origins[**p].is_some())
        .count() as i64;
    run.matched = evaluation.window_rows as i64;
    run.resolved = resolution.resolved;
    run.unresolved = resolution.unresolved - still_waiting;
    run.dropped = resolution.dropped + deferral.drop.len() as i64;
    run.pending = deferral.defer.len() as i64;
    run.expired = settled
        .iter()
        .filter(|(_, how)| *how == Settled::Expired)
        .count() as i64;
}

/// What a run evaluates beyond its request.
pub struct Scope<'a> {
    pub events: Option<&'a DeltaTable>,
    pub window: Window,
    pub sent_after: Option<DateTime<Utc>>,
    pub run_id: &'a str,
    pub ledger: &'a DeltaTable,
    /// The trigger's pending rows, decoded back into its query.
    pub waiting: &'a [PendingRecord],
    /// Record what would be sent as `shadow` (a shadow backfill).
    pub shadow: bool,
    /// The identity index at the window's watermark (none: resolve with
    /// the `identities` view).
    pub identities: Option<&'a IdentityIndex>,
}

/// Runs the trigger's SQL over the window, resolves its rows, and plans
/// what the flows do with them.
pub async fn evaluate_and_plan(
    request: &RunRequest<'_>,
    scope: &Scope<'_>,
) -> Result<(Evaluation, Vec<DeliveryRecord>), String> {
    let spec = SessionSpec {
        store: request.store,
        workspace: request.workspace,
        now: request.now,
        identity_ttl: request.identity_ttl,
        events: scope.events,
    };
    let ctx = workspace_session(&spec).await.map_err(|e| e.to_string())?;
    let new_events =
        new_events(scope.events, scope.window, scope.sent_after).map_err(|e| e.to_string())?;
    ctx.register_table("new_events", new_events)
        .map_err(|e| e.to_string())?;
    let at = AsOf::new(request.now, request.identity_ttl);
    let index = scope.identities.map(|index| (index, at));
    let evaluation = evaluate(&ctx, request.trigger, scope.waiting, index).await?;
    let ledger = scope.ledger;
    let plan = PlanRequest {
        workspace: request.workspace,
        trigger: &request.trigger.name,
        run_id: scope.run_id,
        window: scope.window,
        now: request.now,
        flows: request.flows,
        segments: request.segments,
        ledger: ledger.version().is_some().then_some(ledger),
        shadow: scope.shadow,
    };
    let deliveries = plan_deliveries(&ctx, &plan, &evaluation.resolution).await?;
    Ok((evaluation, deliveries))
}

/// Crash tests set `TRIPWIRE_PAUSE_BEFORE_COMMIT=<dir>` to stop a run with
/// its window planned but not committed: the run creates `<dir>/paused` and
/// waits there to be killed.
fn pause_before_commit_for_tests() {
    if let Some(dir) = std::env::var_os("TRIPWIRE_PAUSE_BEFORE_COMMIT") {
        let _ = std::fs::write(std::path::Path::new(&dir).join("paused"), b"");
        loop {
            std::thread::park();
        }
    }
}

/// Crash tests set `TRIPWIRE_PANIC_IN_RUN=<trigger>` to make that trigger's
/// runs panic, as a bug would.
fn panic_for_tests(trigger: &str) {
    if std::env::var("TRIPWIRE_PANIC_IN_RUN").is_ok_and(|t| t == trigger) {
        panic!("TRIPWIRE_PANIC_IN_RUN={trigger}");
    }
}

/// A run's id: the same for the same window, on every machine
/// (docs/architecture.md "Deterministic ids").
pub fn run_id(workspace: &str, trigger: &str, window: Window) -> String {
    id_of(&[
        workspace,
        trigger,
        &window.from.to_string(),
        &window.to.to_string(),
    ])
}
