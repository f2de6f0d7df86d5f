//! The trigger commands: `run`, `preview`, `triggers`, `check`.

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::error::Error;
use crate::flow::FlowSetup;
use crate::identity::index::IndexCache;
use crate::project::FileError;
use crate::run::{RunRequest, run_trigger, run_triggers};
use crate::session::{SessionSpec, workspace_session};
use crate::sql::limits::within;
use crate::sql::output::{OutputFormat, render};
use crate::sql::plan_read_only;
use crate::store::Store;
use crate::trigger::status::{self, trigger_rows};
use crate::trigger::{TriggerFile, load_triggers};
use crate::window::empty_new_events;

/// `tripwire run [TRIGGER...] [--now]`: runs the named (or all active) triggers once.
pub async fn run(
    config: &Config,
    names: &[String],
    now: Option<DateTime<Utc>>,
) -> Result<(), Error> {
    let triggers = chosen(config, names)?;
    let store = Store::new(config.storage.clone());
    let identities = IndexCache::new();
    let now = now.unwrap_or_else(Utc::now);
    let mut failed = 0;
    // One tick per workspace: its triggers share tables, windows and one commit.
    let mut groups: Vec<(&str, Vec<TriggerFile>)> = Vec::new();
    for trigger in triggers.iter().filter(|t| t.active || !names.is_empty()) {
        let workspace = workspace_of(config, trigger)?;
        match groups.iter_mut().find(|(w, _)| *w == workspace) {
            Some((_, group)) => group.push(trigger.clone()),
            None => groups.push((workspace, vec![trigger.clone()])),
        }
    }
    for (workspace, group) in &groups {
        let setup = FlowSetup::load(config, &store, workspace).await?;
        let request = RunRequest {
            store: &store,
            workspace,
            trigger: &group[0],
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
        let outcomes = match run_triggers(&request, group).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                failed += group.len();
                eprintln!("{workspace}: {e}");
                continue;
            }
        };
        for outcome in outcomes {
            match outcome {
                Ok(outcome) => println!("{outcome}"),
                Err(e) => {
                    failed += 1;
                    eprintln!("{e}");
                }
            }
        }
    }
    // A large workspace's identity index takes milliseconds to free: that
    // happens beside the deliveries rather than before the process exits.
    std::thread::spawn(move || drop(identities));
    // Deliveries run on the wall clock: retries and the retry period are real time.
    for (workspace, summary) in crate::deliver::deliver_all_due(config, &store, Utc::now()).await? {
        println!("{workspace}: {summary}");
    }
    match failed {
        0 => Ok(()),
        n => Err(Error::Usage(format!(
            "{n} trigger run(s) failed; they will be retried with the same window"
        ))),
    }
}

/// `tripwire preview TRIGGER [--all]`: the matches a run would produce; commits nothing.
pub async fn preview(
    config: &Config,
    name: &str,
    all: bool,
    now: Option<DateTime<Utc>>,
    format: OutputFormat,
) -> Result<(), Error> {
    let triggers = chosen(config, &[name.to_string()])?;
    let trigger = &triggers[0];
    let store = Store::new(config.storage.clone());
    let workspace = workspace_of(config, trigger)?;
    let setup = FlowSetup::load(config, &store, workspace).await?;
    let identities = IndexCache::new();
    for error in &setup.errors {
        eprintln!("{error}");
    }
    let request = RunRequest {
        store: &store,
        workspace,
        trigger,
        now: now.unwrap_or_else(Utc::now),
        identity_ttl: config.identity_ttl,
        commit: false,
        whole_history: all,
        flows: &setup.flows,
        segments: &setup.segments,
        flow_errors: &setup.errors,
        max_failures: config.max_run_failures,
        identities: &identities,
    };
    let outcome = within(config.limits.query_timeout, run_trigger(&request))
        .await?
        .map_err(|e| Error::Usage(e.to_string()))?;
    eprintln!("{outcome}");
    let mut rows = match outcome.deliveries.is_empty() {
        false => delivery_rows(&outcome.deliveries),
        true => outcome
            .matches
            .iter()
            .map(|m| {
                serde_json::json!({
                    "email": m.email, "user_id": m.user_id, "client_id": m.client_id,
                    "contact": m.contact, "event_id": m.event_id, "data": m.data,
                })
            })
            .collect(),
    };
    rows.extend(waiting_rows(&outcome.pending));
    print_json_rows(&rows, format)
}

/// Rows the run would defer until an identity arrives.
fn waiting_rows(pending: &[crate::store::ledger::PendingRecord]) -> Vec<serde_json::Value> {
    pending
        .iter()
        .map(|p| {
            let until = chrono::DateTime::from_timestamp_micros(p.wait_until)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            serde_json::json!({
                "status": "waiting for an identity", "waiting_until": until,
                "user_id": p.user_id, "client_id": p.client_id, "data": p.row,
            })
        })
        .collect()
}

/// Per contact and flow: what would happen, and why not when nothing would.
fn delivery_rows(deliveries: &[crate::store::ledger::DeliveryRecord]) -> Vec<serde_json::Value> {
    deliveries
        .iter()
        .map(|d| {
            serde_json::json!({
                "contact": d.contact,
                "flow": d.flow, "variant": d.variant, "branch": d.branch,
                "action": d.action, "status": d.status, "reason": d.reason,
            })
        })
        .collect()
}

/// `tripwire cursor TRIGGER [--set VERSION|latest]`.
pub async fn cursor(
    config: &Config,
    name: &str,
    target: Option<crate::trigger::cursor::CursorTarget>,
) -> Result<(), Error> {
    use crate::trigger::cursor::{cursor, set_cursor};
    let chosen = chosen(config, &[name.to_string()])?;
    let workspace = workspace_of(config, &chosen[0])?;
    let store = Store::new(config.storage.clone());
    let shown = |v: Option<i64>| v.map_or("none (it has not run)".to_string(), |v| v.to_string());
    match target {
        None => println!(
            "{name}: cursor {}",
            shown(cursor(&store, workspace, name).await?)
        ),
        Some(target) => {
            let now = Utc::now().timestamp_micros();
            let (before, after) = set_cursor(&store, workspace, name, target, now).await?;
            println!(
                "{name}: cursor moved from {} to {after}: its next run reads events stamped after version {after}",
                shown(before)
            );
        }
    }
    Ok(())
}

/// `tripwire test [TRIGGER...]`: prints each case and its differences.
pub async fn test(config: &Config, names: &[String]) -> Result<(), Error> {
    let report = crate::workbench::run_tests(config, names).await;
    for line in report.lines() {
        println!("{line}");
    }
    match report.failed() {
        0 => Ok(()),
        n => Err(Error::Usage(format!("{n} trigger test(s) failed"))),
    }
}

/// `tripwire diff TRIGGER [--since D] [--sample N]`.
pub async fn diff(
    config: &Config,
    name: &str,
    since: std::time::Duration,
    sample: usize,
) -> Result<(), Error> {
    let chosen = chosen(config, &[name.to_string()])?;
    let workspace = workspace_of(config, &chosen[0])?;
    let store = Store::new(config.storage.clone());
    let report =
        crate::workbench::diff::diff(config, &store, workspace, &chosen[0], since, Utc::now())
            .await
            .map_err(Error::Usage)?;
    let range = report
        .versions
        .map(|(from, to)| format!(" (versions ({from}, {to}])"))
        .unwrap_or_default();
    println!(
        "{name}: the edited file over {} committed run(s) of the last {}s{range}: \
         {} added, {} removed, {} unchanged",
        report.runs,
        since.as_secs(),
        report.added.len(),
        report.removed.len(),
        report.unchanged
    );
    let key = |(contact, event): &(String, Option<String>)| match event {
        Some(id) => format!("{contact} (event {id})"),
        None => contact.clone(),
    };
    for (sign, keys) in [("+", &report.added), ("-", &report.removed)] {
        for k in keys.iter().take(sample) {
            println!("  {sign} {}", key(k));
        }
        if keys.len() > sample {
            println!("  {sign} … and {} more", keys.len() - sample);
        }
    }
    Ok(())
}

/// `tripwire backfill TRIGGER --since D [--live] [--now T]`.
pub async fn backfill(
    config: &Config,
    name: &str,
    since: std::time::Duration,
    live: bool,
    now: Option<DateTime<Utc>>,
) -> Result<(), Error> {
    let chosen = chosen(config, &[name.to_string()])?;
    let workspace = workspace_of(config, &chosen[0])?;
    let store = Store::new(config.storage.clone());
    let now = now.unwrap_or_else(Utc::now);
    let done = crate::workbench::backfill::backfill(
        config, &store, workspace, &chosen[0], since, live, now,
    )
    .await
    .map_err(|e| Error::Usage(e.to_string()))?;
    if !done.committed {
        println!(
            "{name}: versions up to {} were backfilled in this mode before: nothing recorded",
            done.run.to_version
        );
        return Ok(());
    }
    let planned: Vec<String> = done
        .planned
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    println!(
        "{name}: backfilled versions ({}, {}] sent in the last {}s: {} rows → {} matches; deliveries: {}{}",
        done.run.from_version,
        done.run.to_version,
        since.as_secs(),
        done.run.matched,
        done.matches,
        match planned.is_empty() {
            true => "none".to_string(),
            false => planned.join(", "),
        },
        match live {
            true => "",
            false => " (shadow: nothing is sent; `--live` sends)",
        }
    );
    if live {
        for (workspace, summary) in
            crate::deliver::deliver_all_due(config, &store, Utc::now()).await?
        {
            println!("{workspace}: {summary}");
        }
    }
    Ok(())
}

/// `tripwire resume TRIGGER [--skip]`.
pub async fn resume(config: &Config, name: &str, skip: bool) -> Result<(), Error> {
    let chosen = chosen(config, &[name.to_string()])?;
    let workspace = workspace_of(config, &chosen[0])?;
    let store = Store::new(config.storage.clone());
    let now = Utc::now().timestamp_micros();
    let resumed = crate::trigger::resume::resume(&store, workspace, name, skip, now).await?;
    match resumed.skipped {
        Some((from, to)) => println!(
            "{name}: resumed; versions ({from}, {to}] skipped: their events will not fire it"
        ),
        None => println!("{name}: resumed; its next run retries its window"),
    }
    Ok(())
}

/// `tripwire triggers`: each trigger with its schedule, cursor and next run.
pub async fn list(config: &Config) -> Result<(), Error> {
    let store = Store::new(config.storage.clone());
    let (rows, errors) = trigger_rows(config, &store, None, Utc::now()).await?;
    for error in &errors {
        eprintln!("{error}");
    }
    print_json_rows(&rows, OutputFormat::Table)
}

/// `tripwire check`: every trigger parsed and planned against the real schema.
pub async fn check(config: &Config) -> Result<(), Error> {
    let (triggers, mut errors) = load_triggers(&config.project_dir);
    let store = Store::new(config.storage.clone());
    for trigger in &triggers {
        if let Err(e) = check_one(config, &store, trigger).await {
            errors.push(e);
        }
    }
    let (flows, flow_errors) = crate::flow::load_flows(&config.project_dir);
    errors.extend(flow_errors);
    errors.extend(crate::flow::check_flows(config, &store, &triggers, &flows).await);
    for error in &errors {
        eprintln!("{error}");
    }
    // The trigger tests, when the others plan (a test of a broken trigger
    // says nothing new).
    let tests = match errors.is_empty() {
        true => crate::workbench::run_tests(config, &[]).await,
        false => crate::workbench::TestReport::default(),
    };
    if tests.failed() > 0 {
        for line in tests.lines() {
            eprintln!("{line}");
        }
    }
    match errors.len() + tests.failed() {
        0 => {
            println!(
                "ok: {} trigger(s) and {} flow(s) parse and plan; {} trigger test case(s) pass",
                triggers.len(),
                flows.len(),
                tests.results.len()
            );
            Ok(())
        }
        n => Err(Error::Usage(format!(
            "{n} problem(s) in the project at {}",
            project_folder(config).display()
        ))),
    }
}

/// The project folder, absolute (the embedded default's is the working
/// directory, an empty path).
fn project_folder(config: &Config) -> std::path::PathBuf {
    let dir = match config.project_dir.as_os_str().is_empty() {
        true => std::path::Path::new("."),
        false => config.project_dir.as_path(),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

async fn check_one(config: &Config, store: &Store, trigger: &TriggerFile) -> Result<(), FileError> {
    let at = |reason: String| FileError {
        path: trigger.path.display().to_string(),
        line: sql_line(trigger, &reason),
        reason,
    };
    let workspace = workspace_of(config, trigger).map_err(|e| at(e.to_string()))?;
    let spec = SessionSpec {
        store,
        workspace,
        now: Utc::now(),
        identity_ttl: config.identity_ttl,
        events: None,
    };
    let ctx = workspace_session(&spec)
        .await
        .map_err(|e| at(e.to_string()))?;
    let empty = empty_new_events().map_err(|e| at(e.to_string()))?;
    ctx.register_table("new_events", empty)
        .map_err(|e| at(e.to_string()))?;
    let frame = plan_read_only(&ctx, &trigger.sql)
        .await
        .map_err(|e| at(e.to_string()))?;
    let has = |c: &str| frame.schema().has_column_with_unqualified_name(c);
    if !has("email") && !has("user_id") && !has("client_id") {
        return Err(at(
            "the query must return at least one of the columns email, user_id, client_id".into(),
        ));
    }
    Ok(())
}

/// The file line an SQL error points at (the parser's "Line: N", or the
/// line naming the column, table or function the planner could not find),
/// else the query's first line. Header lines are blanked in `sql`, so its
/// lines are the file's.
fn sql_line(trigger: &TriggerFile, message: &str) -> usize {
    crate::sql::locate::error_line(&trigger.sql, message).unwrap_or_else(|| {
        trigger
            .sql
            .lines()
            .position(|l| !l.trim().is_empty() && !l.trim().starts_with("--"))
            .map_or(1, |i| i + 1)
    })
}

/// The named triggers (all when none are named); an unknown name is an error.
fn chosen(config: &Config, names: &[String]) -> Result<Vec<TriggerFile>, Error> {
    let (triggers, errors) = load_triggers(&config.project_dir);
    for error in &errors {
        eprintln!("{error}");
    }
    if names.is_empty() {
        return Ok(triggers);
    }
    names
        .iter()
        .map(|name| {
            triggers
                .iter()
                .find(|t| &t.name == name)
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<&str> = triggers.iter().map(|t| t.name.as_str()).collect();
                    Error::Usage(format!(
                        "no trigger {name:?} in {} (known: {})",
                        crate::project::TRIGGER_DIR,
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

fn workspace_of<'a>(config: &'a Config, trigger: &TriggerFile) -> Result<&'a str, Error> {
    status::workspace_of(config, trigger).map_err(Error::Usage)
}

/// Prints JSON rows through the query output formats.
pub fn print_json_rows(rows: &[serde_json::Value], format: OutputFormat) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    let bad = |e: arrow::error::ArrowError| Error::Usage(e.to_string());
    let (schema, _) = arrow::json::reader::infer_json_schema_from_seekable(
        std::io::Cursor::new(text.as_bytes()),
        None,
    )
    .map_err(bad)?;
    let batches = arrow::json::ReaderBuilder::new(std::sync::Arc::new(schema))
        .build(std::io::Cursor::new(text.as_bytes()))
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    print!("{}", render(&batches, format).map_err(bad)?);
    Ok(())
}
