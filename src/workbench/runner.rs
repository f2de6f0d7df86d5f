//! Runs one trigger test case offline: a throwaway store (a temporary
//! folder, removed afterwards) with the case's events imported and its
//! static segments saved, then the trigger previewed over all of it with
//! the project's flows and segments, at the case's clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use url::Url;

use super::compare::{Observed, ObservedDecision, ObservedMatch};
use super::spec::Case;
use crate::config::Config;
use crate::flow::FlowSetup;
use crate::flow::segment::{Member, save_list};
use crate::identity::index::IndexCache;
use crate::import::{Format, ImportOptions, Progress, import};
use crate::run::{RunOutcome, RunRequest, run_trigger};
use crate::session::{SessionSpec, workspace_session};
use crate::sql::run_read_only;
use crate::store::Store;
use crate::trigger::TriggerFile;

/// A folder removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("tripwire-test-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `trigger` does with `case`'s events, in a throwaway store.
pub async fn run_case(
    config: &Config,
    trigger: &TriggerFile,
    case: &Case,
) -> Result<Observed, String> {
    let scratch = Scratch::new()?;
    let config = throwaway(config, &scratch.0)?;
    let workspace = config
        .pick_workspace(trigger.workspace.as_deref())
        .map_err(|e| format!("{}: {e}", trigger.path.display()))?
        .id
        .clone();
    let store = Store::new(config.storage.clone());
    import_events(&config, &workspace, &case.events, &scratch.0).await?;
    for (name, members) in &case.segments {
        save_list(&store, &workspace, name, &members_of(members))
            .await
            .map_err(|e| format!("segment {name}: {e}"))?;
    }
    let now = match case.now {
        Some(now) => now,
        None => after_latest_event(&config, &store, &workspace).await?,
    };
    let setup = FlowSetup::load(&config, &store, &workspace)
        .await
        .map_err(|e| e.to_string())?;
    let identities = IndexCache::new();
    let request = RunRequest {
        store: &store,
        workspace: &workspace,
        trigger,
        now,
        identity_ttl: config.identity_ttl,
        commit: false,
        whole_history: true,
        flows: &setup.flows,
        segments: &setup.segments,
        flow_errors: &setup.errors,
        max_failures: config.max_run_failures,
        identities: &identities,
    };
    let outcome = run_trigger(&request).await.map_err(|e| e.to_string())?;
    Ok(observed(&outcome))
}

/// The project's configuration with its storage in `dir`.
fn throwaway(config: &Config, dir: &Path) -> Result<Config, String> {
    let mut config = config.clone();
    let store = dir.join("store");
    std::fs::create_dir_all(&store).map_err(|e| e.to_string())?;
    config.storage = Url::from_directory_path(&store)
        .map_err(|_| format!("{} is not a usable folder", store.display()))?;
    Ok(config)
}

/// Imports the case's events; any that is not a valid event fails the case.
async fn import_events(
    config: &Config,
    workspace: &str,
    events: &[serde_json::Value],
    dir: &Path,
) -> Result<(), String> {
    let file = dir.join("events.ndjson");
    let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&file, lines).map_err(|e| e.to_string())?;
    let options = ImportOptions {
        paths: vec![file],
        workspace: Some(workspace.to_string()),
        format: Format::Ndjson,
        strict: true,
    };
    import(config, &options, &Progress::hidden())
        .await
        .map(|_| ())
        .map_err(|e| format!("its events do not import: {e}"))
}

fn members_of(members: &[String]) -> Vec<Member> {
    members
        .iter()
        .map(|m| match m.contains('@') {
            true => Member {
                email: Some(m.clone()),
                user_id: None,
            },
            false => Member {
                email: None,
                user_id: Some(m.clone()),
            },
        })
        .collect()
}

/// A minute after the latest event's `sent_at`: the default clock.
async fn after_latest_event(
    config: &Config,
    store: &Store,
    workspace: &str,
) -> Result<DateTime<Utc>, String> {
    let spec = SessionSpec {
        store,
        workspace,
        now: Utc::now(),
        identity_ttl: config.identity_ttl,
        events: None,
    };
    let ctx = workspace_session(&spec).await.map_err(|e| e.to_string())?;
    let batches = run_read_only(
        &ctx,
        "SELECT CAST(max(sent_at) AS BIGINT) AS latest FROM events",
    )
    .await
    .map_err(|e| e.to_string())?;
    let latest = batches
        .first()
        .and_then(|b| {
            use arrow::array::{Array, AsArray};
            let column = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            column.is_valid(0).then(|| column.value(0))
        })
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or_else(Utc::now);
    Ok(latest + Duration::minutes(1))
}

/// The run's matches with each flow's decision, and its waiting rows.
fn observed(outcome: &RunOutcome) -> Observed {
    let matches = outcome
        .matches
        .iter()
        .map(|m| {
            let mut flows = BTreeMap::new();
            for d in outcome.deliveries.iter().filter(|d| d.ordinal == m.ordinal) {
                flows
                    .entry(d.flow.clone())
                    .or_insert_with(|| ObservedDecision {
                        status: d.status.clone(),
                        reason: d.reason.clone(),
                        variant: d.variant.clone(),
                        branch: d.branch,
                    });
            }
            ObservedMatch {
                contact: m.contact.clone(),
                event_id: m.event_id.clone(),
                data: serde_json::from_str(&m.data).unwrap_or_default(),
                flows,
            }
        })
        .collect();
    Observed {
        matches,
        waiting: outcome.pending.len() as u64,
    }
}
