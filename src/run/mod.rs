//! One trigger run, end to end (docs/architecture.md "Runs"): pick the
//! window `(cursor, watermark]`, evaluate the trigger over it (`trigger`),
//! plan what its flows do with the matches (`flow`), and commit the run,
//! its matches, its deliveries and the new cursor in one ledger commit.

mod landing;
mod tick;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;

use landing::{Step, commit_steps};
pub use tick::{MAX_SHARED_WINDOW_ROWS, Tick};

use crate::flow::Flow;
use crate::flow::plan::{PlanRequest, plan_deliveries};
use crate::flow::segment::SegmentSource;
use crate::identity::index::{AsOf, IdentityIndex, IndexCache};
use crate::identity::pending::{self, Deferral};
use crate::project::FileError;
use crate::session::{SessionSpec, workspace_session};
use crate::store::ledger::{
    DeliveryRecord, MatchRecord, PendingRecord, RunRecord, RunRows, Settled, cursor_app_id, id_of,
    run_batch,
};
use crate::store::{Store, StoreError};
use crate::trigger::TriggerFile;
use crate::trigger::evaluate::{Evaluation, evaluate};
use crate::window::{Window, new_events};

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
    /// A run with nothing to read or write.
    fn empty(run: RunRecord, status: RunStatus) -> RunOutcome {
        RunOutcome {
            run,
            pending: Vec::new(),
            matches: Vec::new(),
            deliveries: Vec::new(),
            status,
        }
    }

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
pub async fn run_trigger(request: &RunRequest<'_>) -> Result<RunOutcome, RunError> {
    let mut outcomes = run_triggers(request, std::slice::from_ref(request.trigger)).await?;
    outcomes.pop().unwrap_or_else(|| {
        Err(RunError::Query {
            path: request.trigger.path.display().to_string(),
            message: "the run produced no outcome".into(),
        })
    })
}

/// Runs `triggers` (of `request.workspace`; `request.trigger` is ignored)
/// once, as one tick (docs/architecture.md "Ticks"): the tables, identity
/// index and ledger reads are shared, each window is read once, and every
/// run that commits lands in one ledger commit with its cursor. Returns
/// each trigger's outcome, in order; a panic in one trigger's run is that
/// run's failure, recorded like any other.
#[tracing::instrument(name = "tick", skip_all, fields(workspace = request.workspace, triggers = triggers.len()))]
pub async fn run_triggers(
    request: &RunRequest<'_>,
    triggers: &[TriggerFile],
) -> Result<Vec<Result<RunOutcome, RunError>>, RunError> {
    let mut tick = Tick::open(request, triggers).await?;
    let mut steps = Vec::with_capacity(triggers.len());
    for trigger in triggers {
        let one = RunRequest {
            trigger,
            ..*request
        };
        steps.push(step_caught(&one, &tick).await);
    }
    if request.commit {
        if steps.iter().any(|s| matches!(s, Step::Run { .. })) {
            pause_before_commit_for_tests();
        }
        commit_steps(&mut tick.ledger, &mut steps).await?;
    }
    Ok(steps.into_iter().map(Step::finish).collect())
}

/// [`step`], with a panic caught and turned into a failed run.
async fn step_caught(request: &RunRequest<'_>, tick: &Tick) -> Step {
    use futures::FutureExt as _;
    let caught = std::panic::AssertUnwindSafe(step(request, tick))
        .catch_unwind()
        .await;
    let panic = match caught {
        Ok(step) => return step,
        Err(panic) => panic_message(panic.as_ref()),
    };
    let message = format!("the run panicked: {panic}");
    let error = RunError::Query {
        path: request.trigger.path.display().to_string(),
        message: message.clone(),
    };
    match request.commit {
        false => Step::Done(Err(error)),
        true => Step::Failed {
            error,
            record: run_batch(&panic_record(request, message), &RunRows::default()),
        },
    }
}

/// One trigger's run within a tick, up to (not including) its commit.
#[tracing::instrument(name = "run", skip_all, fields(trigger = %request.trigger.name, workspace = request.workspace))]
async fn step(request: &RunRequest<'_>, tick: &Tick) -> Step {
    let trigger = request.trigger;
    let path = trigger.path.display().to_string();
    if request.commit
        && let Some(broken) = crate::flow::blocking_error(request.flow_errors, &trigger.name)
    {
        return Step::Done(Err(RunError::Query {
            path,
            message: format!("not run while a flow file that may listen to it is broken: {broken}"),
        }));
    }
    panic_for_tests(&trigger.name);
    let streak = tick.streak(&trigger.name);
    if request.commit && streak.paused(request.max_failures) {
        return Step::Done(Err(RunError::Paused {
            trigger: trigger.name.clone(),
            failures: streak.failures,
            error: streak.last_error.unwrap_or_default(),
        }));
    }
    let started_at = Utc::now().timestamp_micros();
    let (window, sent_after) = tick.window_of(request);
    let mut run = RunRecord {
        run_id: run_id(request.workspace, &trigger.name, window),
        trigger: trigger.name.clone(),
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
    let starts = tick.cursor(&trigger.name).is_none() && !request.whole_history;
    if window.is_empty() && !starts {
        let status = match request.commit {
            false => RunStatus::Preview,
            true => RunStatus::NothingNew,
        };
        return Step::Done(Ok(RunOutcome::empty(run, status)));
    }
    // Rows that waited for an identity come back in every run until settled
    // (not in a preview of all history, which re-reads their events).
    let waiting = tick.waiting(&trigger.name);
    let run_id = run.run_id.clone();
    let scope = Scope {
        events: tick.events(),
        window,
        sent_after,
        run_id: &run_id,
        ledger: &tick.ledger,
        waiting,
        shadow: false,
        identities: tick.index.as_deref(),
    };
    let evaluated = match tick.session(request, window, sent_after).await {
        Ok(ctx) => evaluate_and_plan(request, &scope, &ctx).await,
        Err(message) => Err(message),
    };
    let (evaluation, deliveries) = match evaluated {
        Ok(evaluated) => evaluated,
        Err(message) => return failed_step(request, run, message),
    };
    let deferral = pending::defer(
        &evaluation.resolution.waiting,
        &evaluation.origins,
        &waiting.iter().map(|p| p.wait_until).collect::<Vec<_>>(),
        trigger.wait_for_identity,
        request.now,
    );
    let deferred = match pending::deferred(
        &evaluation.resolution.rows,
        &deferral.defer,
        &run_id,
        pending::wait_until(request.now, trigger.wait_for_identity),
    ) {
        Ok(deferred) => deferred,
        Err(e) => {
            let error = StoreError::delta(tick.ledger.table_url(), e);
            return Step::Done(Err(error.into()));
        }
    };
    let settled = settlements(waiting, &evaluation, &deferral);
    count(&mut run, &evaluation, &deferral, &settled);
    run.held = deliveries.iter().filter(|d| d.status == "held").count() as i64;
    run.finished_at = Utc::now().timestamp_micros();
    let matches = evaluation.resolution.matches;
    let rows = RunRows {
        matches: &matches,
        deliveries: &deliveries,
        pending: &deferred,
        settled: &settled,
    };
    let batches = match request.commit {
        true => run_batch(&run, &rows),
        false => Vec::new(),
    };
    let outcome = RunOutcome {
        run,
        pending: deferred,
        matches,
        deliveries,
        status: RunStatus::Preview,
    };
    match request.commit {
        false => Step::Done(Ok(outcome)),
        true => Step::Run {
            app_id: cursor_app_id(&trigger.name),
            version: window.to,
            batches,
            outcome,
            landed: false,
        },
    }
}

/// A run whose SQL or flows failed: recorded for the history (when
/// committing), without moving the cursor.
fn failed_step(request: &RunRequest<'_>, mut run: RunRecord, message: String) -> Step {
    run.error = Some(message.clone());
    run.finished_at = Utc::now().timestamp_micros();
    let error = RunError::Query {
        path: request.trigger.path.display().to_string(),
        message,
    };
    match request.commit {
        false => Step::Done(Err(error)),
        true => {
            run.run_id = format!("{}-failed-{}", run.run_id, run.started_at);
            Step::Failed {
                error,
                record: run_batch(&run, &RunRows::default()),
            }
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
fn panic_record(request: &RunRequest<'_>, error: String) -> RunRecord {
    let at = Utc::now().timestamp_micros();
    RunRecord {
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
        error: Some(error),
    }
}

/// How this run ends earlier pending rows: resolved (they fire with it),
/// expired (their wait is over), or expired because they no longer decode
/// into the trigger's query.
fn settlements(
    waiting: &[Arc<PendingRecord>],
    evaluation: &Evaluation,
    deferral: &Deferral,
) -> Vec<(String, Settled)> {
    let mut decoded = vec![false; waiting.len()];
    for origin in evaluation.origins.iter().flatten() {
        if let Some(mark) = decoded.get_mut(*origin) {
            *mark = true;
        }
    }
    let undecodable = (0..waiting.len()).filter(|i| !decoded[*i]);
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
    pub waiting: &'a [Arc<PendingRecord>],
    /// Record what would be sent as `shadow` (a shadow backfill).
    pub shadow: bool,
    /// The identity index at the window's watermark (none: resolve with
    /// the `identities` view).
    pub identities: Option<&'a IdentityIndex>,
}

/// The session a run outside a tick evaluates in (a backfill): the
/// workspace's tables, with its window as `new_events`.
pub async fn run_session(
    request: &RunRequest<'_>,
    scope: &Scope<'_>,
) -> Result<SessionContext, String> {
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
    Ok(ctx)
}

/// Runs the trigger's SQL over the window (`new_events` in `ctx`), resolves
/// its rows, and plans what the flows do with them.
pub async fn evaluate_and_plan(
    request: &RunRequest<'_>,
    scope: &Scope<'_>,
    ctx: &SessionContext,
) -> Result<(Evaluation, Vec<DeliveryRecord>), String> {
    let at = AsOf::new(request.now, request.identity_ttl);
    let index = scope.identities.map(|index| (index, at));
    let evaluation = evaluate(ctx, request.trigger, scope.waiting, index).await?;
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
    let deliveries = plan_deliveries(ctx, &plan, &evaluation.resolution).await?;
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
