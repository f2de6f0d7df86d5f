//! `GET /triggers/{name}`: one trigger's file (header and SQL), status,
//! runs (newest first) and the runs chart; and its buttons, each a POST
//! that answers the same page with its result: preview (a dry run with
//! each contact's why / why-not), test (`workbench::run_tests` over its
//! `queries/tests/NAME.toml`) and diff (`workbench::diff` over `since`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Web;
use super::auth::{Viewer, posted};
use super::chart::{RunPoint, runs_chart};
use super::form::Fields;
use super::ledger::run_history;
use super::page::Frame;
use super::preview::{dry_run, explain};
use super::triggers::{Newest, next_run, run_summary, trigger_href};
use crate::sql::limits::within;
use crate::trigger::status::{trigger_rows, workspace_of};
use crate::trigger::{TriggerFile, load_triggers};
use crate::workbench::diff::{Key, diff as diff_trigger};

/// Added and removed contacts a diff lists (the counts are always whole).
pub const DIFF_SAMPLE: usize = 10;

/// The `since` a diff compares over unless the form says otherwise.
const DEFAULT_SINCE: &str = "7d";

/// What a button added to the page, and the values its form had.
#[derive(Default)]
struct Results {
    preview: Option<Value>,
    tests: Option<Value>,
    diff: Option<Value>,
    error: Option<String>,
    all: bool,
    now: String,
    since: String,
}

/// `GET /triggers/{name}`.
pub async fn page(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Response {
    let results = Results {
        since: DEFAULT_SINCE.to_string(),
        ..Results::default()
    };
    show(&web, &viewer, &name, results).await
}

/// `POST /triggers/{name}/preview` (`all`: every event; `now`: the clock).
pub async fn preview(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let form = match posted(&web, &viewer, &body) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let mut results = Results::from_form(&form);
    let Some(trigger) = find(&web, &viewer.workspace, &name) else {
        return not_found(&web, &viewer, &name);
    };
    match parse_now(&results.now) {
        Err(e) => results.error = Some(e),
        Ok(now) => match dry_run(&web, &viewer.workspace, &trigger, results.all, now).await {
            Ok(outcome) => {
                results.preview = Some(json!({
                    "summary": outcome.to_string(),
                    "lines": explain(&outcome),
                }))
            }
            Err(e) => results.error = Some(format!("preview: {e}")),
        },
    }
    show(&web, &viewer, &name, results).await
}

/// `POST /triggers/{name}/test`: the trigger's test cases.
pub async fn test(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let form = match posted(&web, &viewer, &body) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let mut results = Results::from_form(&form);
    if find(&web, &viewer.workspace, &name).is_none() {
        return not_found(&web, &viewer, &name);
    }
    let report = crate::workbench::run_tests(&web.config, std::slice::from_ref(&name)).await;
    let cases: Vec<Value> = report
        .results
        .iter()
        .map(|r| {
            json!({
                "case": r.case, "passed": r.passed(), "error": r.error,
                "differences": r.differences,
            })
        })
        .collect();
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    results.tests = Some(json!({
        "cases": cases,
        "errors": errors,
        "failed": report.failed(),
        "summary": report.lines().last(),
        "file": format!("{}/{name}.toml", crate::workbench::spec::TEST_DIR),
    }));
    show(&web, &viewer, &name, results).await
}

/// `POST /triggers/{name}/diff` (`since`, default 7d).
pub async fn diff(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let form = match posted(&web, &viewer, &body) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let mut results = Results::from_form(&form);
    let Some(trigger) = find(&web, &viewer.workspace, &name) else {
        return not_found(&web, &viewer, &name);
    };
    let since = match crate::duration::parse_duration(&results.since) {
        Ok(since) => since,
        Err(e) => {
            results.error = Some(format!("since: {e}"));
            return show(&web, &viewer, &name, results).await;
        }
    };
    let compared = within(
        web.config.limits.query_timeout,
        diff_trigger(
            &web.config,
            &web.store,
            &viewer.workspace,
            &trigger,
            since,
            Utc::now(),
        ),
    )
    .await
    .map_err(|e| e.to_string())
    .and_then(|report| report);
    match compared {
        Ok(report) => {
            results.diff = Some(json!({
                "runs": report.runs,
                "versions": report.versions.map(|(from, to)| format!("({from}, {to}]")),
                "added": report.added.len(),
                "removed": report.removed.len(),
                "unchanged": report.unchanged,
                "added_sample": sample(&report.added),
                "removed_sample": sample(&report.removed),
                "sample": DIFF_SAMPLE,
            }))
        }
        Err(e) => results.error = Some(format!("diff: {e}")),
    }
    show(&web, &viewer, &name, results).await
}

impl Results {
    fn from_form(form: &Fields) -> Results {
        Results {
            all: form.ticked("all"),
            now: form.filled("now").unwrap_or_default().to_string(),
            since: form.filled("since").unwrap_or(DEFAULT_SINCE).to_string(),
            ..Results::default()
        }
    }
}

/// The clock a preview runs at: the form's (RFC 3339), else now.
fn parse_now(text: &str) -> Result<DateTime<Utc>, String> {
    match text {
        "" => Ok(Utc::now()),
        text => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                format!("now: {text:?} is not an RFC 3339 time like 2026-11-05T00:00:00Z ({e})")
            }),
    }
}

/// A trigger file's path as the page shows it: inside the project folder.
fn shown_path(project_dir: &std::path::Path, path: &std::path::Path) -> String {
    path.strip_prefix(project_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn sample(keys: &[Key]) -> Vec<String> {
    keys.iter()
        .take(DIFF_SAMPLE)
        .map(|(contact, event)| match event {
            Some(id) => format!("{contact} (event {id})"),
            None => contact.clone(),
        })
        .collect()
}

/// The trigger `name` of `workspace`, if its file parses.
fn find(web: &Web, workspace: &str, name: &str) -> Option<TriggerFile> {
    let (triggers, _) = load_triggers(&web.config.project_dir);
    triggers
        .into_iter()
        .find(|t| t.name == name && workspace_of(&web.config, t).is_ok_and(|w| w == workspace))
}

fn not_found(web: &Web, viewer: &Viewer, name: &str) -> Response {
    web.pages.message(
        StatusCode::NOT_FOUND,
        Frame::new("Not found", "triggers", Some(viewer)),
        &format!(
            "There is no trigger {name:?} in workspace {:?} (or its file does not parse: \
             the triggers page lists the files that do not).",
            viewer.workspace
        ),
    )
}

async fn show(web: &Web, viewer: &Viewer, name: &str, results: Results) -> Response {
    let Some(trigger) = find(web, &viewer.workspace, name) else {
        return not_found(web, viewer, name);
    };
    let status = match results.error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let frame = Frame::new(name, "triggers", Some(viewer)).error(results.error.clone());
    match context(web, &viewer.workspace, &trigger, &results).await {
        Ok(context) => web.pages.render(status, frame, "trigger.html", context),
        Err(e) => web
            .pages
            .message(StatusCode::INTERNAL_SERVER_ERROR, frame, &e),
    }
}

async fn context(
    web: &Web,
    workspace: &str,
    trigger: &TriggerFile,
    results: &Results,
) -> Result<Value, String> {
    let now = Utc::now();
    let text = tokio::fs::read_to_string(&trigger.path)
        .await
        .unwrap_or_else(|e| format!("-- cannot read {}: {e}", trigger.path.display()));
    let (rows, _) = trigger_rows(&web.config, &web.store, Some(workspace), now)
        .await
        .map_err(|e| e.to_string())?;
    let mut status = rows
        .into_iter()
        .find(|r| r["trigger"] == trigger.name.as_str())
        .unwrap_or(Value::Null);
    let newest = Newest::read(web, workspace).await?;
    if status.is_object() {
        status["lag"] = json!(newest.lag(status["cursor"].as_i64(), now).await);
        status["next_run"] = json!(next_run(status["next_run"].as_str(), now));
    }
    let history = run_history(web, workspace, &trigger.name).await?;
    let runs: Vec<Value> = (0..history.rows.len())
        .map(|i| run_summary(&history, i))
        .collect();
    let points: Vec<RunPoint> = (0..history.rows.len())
        .filter_map(|i| {
            Some(RunPoint {
                at: DateTime::<Utc>::from_timestamp_micros(history.number(i, "finished_us"))?,
                matches: history.number(i, "matches").max(0) as u64,
                deliveries: history.number(i, "deliveries").max(0) as u64,
            })
        })
        .collect();
    let href = trigger_href(&trigger.name);
    Ok(json!({
        "name": trigger.name,
        "path": shown_path(&web.config.project_dir, &trigger.path),
        "text": text,
        "status": status,
        "runs": runs,
        "chart": runs_chart(&points),
        "href": href,
        "preview": results.preview,
        "tests": results.tests,
        "diff": results.diff,
        "form": { "all": results.all, "now": results.now, "since": results.since },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_rfc3339_or_now() {
        let pinned = parse_now("2026-11-05T00:00:00Z").unwrap();
        assert_eq!(pinned.to_rfc3339(), "2026-11-05T00:00:00+00:00");
        let error = parse_now("yesterday").unwrap_err();
        assert!(error.starts_with("now: \"yesterday\""), "{error}");
        assert!(parse_now("").is_ok());
    }

    #[test]
    fn file_paths_are_shown_inside_the_project() {
        let project = std::path::Path::new("/srv/shop");
        let file = project.join("queries/triggers/a.sql");
        assert_eq!(shown_path(project, &file), "queries/triggers/a.sql");
        let elsewhere = std::path::Path::new("/tmp/b.sql");
        assert_eq!(shown_path(project, elsewhere), "/tmp/b.sql");
    }

    #[test]
    fn a_diff_sample_names_events_when_it_keys_by_them() {
        let keys = vec![
            ("email:a@x".to_string(), None),
            ("email:b@x".to_string(), Some("e-1".to_string())),
        ];
        assert_eq!(sample(&keys), vec!["email:a@x", "email:b@x (event e-1)"]);
    }
}
