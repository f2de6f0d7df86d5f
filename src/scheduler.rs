//! The scheduler inside `tripwire serve`: every tick it re-reads the trigger
//! files (so added, edited and deleted files take effect without a restart),
//! runs each trigger that is due, and never runs the same trigger twice at
//! once. When a run fails it commits nothing and the next due tick retries
//! the same window plus whatever arrived since.
//!
//! [`Plan`] holds the decisions ("what is due at t?") as pure functions of
//! the trigger files and the clock; [`run_scheduler`] is the loop around it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::identity::index::IndexCache;
use crate::run::{RunRequest, run_triggers};
use crate::schedule::Schedule;
use crate::store::Store;
use crate::trigger::{TriggerFile, load_triggers};

/// How often the scheduler wakes to re-read trigger files and start due runs.
pub const TICK: Duration = Duration::from_millis(500);

/// How long a graceful shutdown waits for runs in flight before leaving them
/// (a run cut short commits nothing and is redone by the next scheduler).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// When each active trigger is next due.
#[derive(Debug, Default)]
pub struct Plan {
    entries: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// The schedule as written, to notice an edit.
    text: String,
    schedule: Schedule,
    next_due: Option<DateTime<Utc>>,
}

impl Plan {
    /// Brings the plan in line with the trigger files as they are at `now`:
    /// a new trigger, or one whose schedule changed, is planned from `now`;
    /// deleted and inactive triggers are forgotten.
    pub fn sync(&mut self, triggers: &[TriggerFile], default_schedule: &str, now: DateTime<Utc>) {
        let mut current = HashSet::new();
        for trigger in triggers.iter().filter(|t| t.active) {
            let text = trigger.schedule.as_deref().unwrap_or(default_schedule);
            current.insert(trigger.name.clone());
            let unchanged = self
                .entries
                .get(&trigger.name)
                .is_some_and(|e| e.text == text);
            if unchanged {
                continue;
            }
            // Trigger headers and the config's default are validated when read.
            if let Ok(schedule) = text.parse::<Schedule>() {
                let next_due = schedule.next_after(now);
                let entry = Entry {
                    text: text.to_string(),
                    schedule,
                    next_due,
                };
                self.entries.insert(trigger.name.clone(), entry);
            }
        }
        self.entries.retain(|name, _| current.contains(name));
    }

    /// The triggers due at `now` that are not `running`, sorted by name;
    /// each one taken is planned again from `now`. A due trigger that is
    /// still running stays due, and runs as soon as its last run ends.
    pub fn take_due(&mut self, now: DateTime<Utc>, running: &HashSet<String>) -> Vec<String> {
        let mut due: Vec<String> = Vec::new();
        for (name, entry) in &mut self.entries {
            let is_due = entry.next_due.is_some_and(|at| at <= now);
            if is_due && !running.contains(name) {
                entry.next_due = entry.schedule.next_after(now);
                due.push(name.clone());
            }
        }
        due.sort();
        due
    }

    /// When `trigger` is next due, if it is planned.
    pub fn next_due(&self, trigger: &str) -> Option<DateTime<Utc>> {
        self.entries.get(trigger).and_then(|e| e.next_due)
    }
}

/// Runs due triggers until `shutdown` turns true, then waits (up to
/// [`SHUTDOWN_GRACE`]) for the runs in flight.
pub async fn run_scheduler(
    config: Arc<Config>,
    identities: Arc<IndexCache>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Tables stay open between ticks: each tick reads only new commits.
    let store = Store::new(config.storage.clone()).keeping_tables_open();
    let mut plan = Plan::default();
    let mut running: HashSet<String> = HashSet::new();
    let mut runs: JoinSet<Vec<String>> = JoinSet::new();
    // Which task runs which triggers: a task that dies (a panic outside
    // the runs) still frees its triggers.
    let mut tasks: HashMap<tokio::task::Id, Vec<String>> = HashMap::new();
    let mut reported: HashSet<String> = HashSet::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !*shutdown.borrow() {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(finished) = runs.join_next_with_id() => {
                let id = match finished {
                    Ok((id, _)) => id,
                    Err(died) => {
                        tracing::error!("a scheduled tick died: {died}");
                        died.id()
                    }
                };
                for name in tasks.remove(&id).unwrap_or_default() {
                    running.remove(&name);
                }
                continue;
            }
            _ = shutdown.changed() => continue,
        }
        let now = Utc::now();
        let (triggers, errors) = load_triggers(&config.project_dir);
        report_file_errors(&mut reported, errors.iter().map(ToString::to_string));
        plan.sync(&triggers, &config.default_schedule, now);
        let due = plan.take_due(now, &running);
        for (workspace, group) in by_workspace(&config, &triggers, &due) {
            let names: Vec<String> = group.iter().map(|t| t.name.clone()).collect();
            running.extend(names.iter().cloned());
            let (config, store, identities) = (config.clone(), store.clone(), identities.clone());
            let task = runs.spawn(async move {
                run_tick(&config, &store, &identities, &workspace, &group, now).await;
                group.into_iter().map(|t| t.name).collect()
            });
            tasks.insert(task.id(), names);
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while runs.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(
            "shutdown: runs still in flight were stopped; they commit nothing and rerun"
        );
    }
}

/// The `due` triggers grouped by workspace, in name order; a trigger whose
/// workspace is unknown is logged and left out.
fn by_workspace(
    config: &Config,
    triggers: &[TriggerFile],
    due: &[String],
) -> BTreeMap<String, Vec<TriggerFile>> {
    let mut groups: BTreeMap<String, Vec<TriggerFile>> = BTreeMap::new();
    for name in due {
        let Some(trigger) = triggers.iter().find(|t| &t.name == name) else {
            continue;
        };
        match config.pick_workspace(trigger.workspace.as_deref()) {
            Ok(workspace) => groups
                .entry(workspace.id.clone())
                .or_default()
                .push(trigger.clone()),
            Err(e) => tracing::warn!(path = %trigger.path.display(), "{e}"),
        }
    }
    groups
}

/// One tick of a workspace's due triggers; logs each run's outcome.
async fn run_tick(
    config: &Config,
    store: &Store,
    identities: &IndexCache,
    workspace: &str,
    triggers: &[TriggerFile],
    now: DateTime<Utc>,
) {
    let setup = match crate::flow::FlowSetup::load(config, store, workspace).await {
        Ok(setup) => setup,
        Err(e) => {
            tracing::warn!(workspace, "{e} (retried at the next due time)");
            return;
        }
    };
    let Some(first) = triggers.first() else {
        return;
    };
    let request = RunRequest {
        store,
        workspace,
        trigger: first,
        now,
        identity_ttl: config.identity_ttl,
        commit: true,
        whole_history: false,
        flows: &setup.flows,
        segments: &setup.segments,
        flow_errors: &setup.errors,
        max_failures: config.max_run_failures,
        identities,
    };
    let outcomes = match run_triggers(&request, triggers).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            tracing::warn!(workspace, "{e} (retried at the next due time)");
            return;
        }
    };
    for outcome in outcomes {
        match outcome {
            Ok(outcome) if outcome.matched_anything_new() => tracing::info!("{outcome}"),
            Ok(_) => {}
            Err(e @ crate::run::RunError::Paused { .. }) => tracing::warn!("{e}"),
            Err(e) => tracing::warn!("{e} (retried at the next due time)"),
        }
    }
}

/// Logs each trigger file problem once, until it is fixed.
fn report_file_errors(reported: &mut HashSet<String>, errors: impl Iterator<Item = String>) {
    let current: HashSet<String> = errors.collect();
    for error in current.difference(reported) {
        tracing::warn!("{error}");
    }
    *reported = current;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn trigger(name: &str, header: &str) -> TriggerFile {
        let path = format!("queries/triggers/{name}.sql");
        TriggerFile::parse(
            Path::new(&path),
            &format!("{header}\nSELECT email FROM new_events"),
        )
        .unwrap()
    }

    const DEFAULT: &str = "*/5 * * * *";

    #[test]
    fn a_trigger_is_due_at_its_next_schedule_time_and_then_replanned() {
        let mut plan = Plan::default();
        let t = vec![trigger("a", "-- schedule: every 30s")];
        plan.sync(&t, DEFAULT, at("2026-01-01T10:00:00Z"));
        let none = HashSet::new();
        assert!(plan.take_due(at("2026-01-01T10:00:29Z"), &none).is_empty());
        assert_eq!(plan.take_due(at("2026-01-01T10:00:30Z"), &none), ["a"]);
        assert!(plan.take_due(at("2026-01-01T10:00:31Z"), &none).is_empty());
        assert_eq!(plan.next_due("a"), Some(at("2026-01-01T10:01:00Z")));
    }

    #[test]
    fn the_default_schedule_applies_without_a_header() {
        let mut plan = Plan::default();
        plan.sync(&[trigger("a", "")], DEFAULT, at("2026-01-01T10:01:00Z"));
        assert_eq!(plan.next_due("a"), Some(at("2026-01-01T10:05:00Z")));
    }

    #[test]
    fn a_running_trigger_is_not_started_again_but_stays_due() {
        let mut plan = Plan::default();
        plan.sync(
            &[trigger("a", "-- schedule: every 10s")],
            DEFAULT,
            at("2026-01-01T10:00:00Z"),
        );
        let running: HashSet<String> = ["a".to_string()].into();
        assert!(
            plan.take_due(at("2026-01-01T10:00:15Z"), &running)
                .is_empty()
        );
        assert_eq!(
            plan.take_due(at("2026-01-01T10:00:16Z"), &HashSet::new()),
            ["a"]
        );
    }

    #[test]
    fn edits_deletions_and_deactivation_take_effect_on_sync() {
        let mut plan = Plan::default();
        let start = at("2026-01-01T10:00:00Z");
        plan.sync(
            &[
                trigger("a", "-- schedule: every 1h"),
                trigger("b", "-- schedule: every 1h"),
            ],
            DEFAULT,
            start,
        );
        // An unchanged schedule keeps its plan; an edited one is replanned.
        let later = at("2026-01-01T10:30:00Z");
        plan.sync(
            &[
                trigger("a", "-- schedule: every 1h"),
                trigger("b", "-- schedule: every 1m"),
            ],
            DEFAULT,
            later,
        );
        assert_eq!(plan.next_due("a"), Some(at("2026-01-01T11:00:00Z")));
        assert_eq!(plan.next_due("b"), Some(at("2026-01-01T10:31:00Z")));
        // Deleted (a) and deactivated (b) triggers are no longer planned.
        plan.sync(&[trigger("b", "-- active: false")], DEFAULT, later);
        assert_eq!((plan.next_due("a"), plan.next_due("b")), (None, None));
        assert!(
            plan.take_due(at("2026-01-02T00:00:00Z"), &HashSet::new())
                .is_empty()
        );
    }
}
