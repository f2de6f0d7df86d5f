//! Flows (docs/reference.md "Flows"): what happens to a trigger's matches.
//!
//! - `file`: flow files and their validation.
//! - `segment`: SQL segments and imported lists.
//! - `plan`: segment filters, frequency caps, experiments and branches,
//!   set-based over a run's matches → planned deliveries.
//! - `render`: the payload each delivery will send.
//! - `rate`: an action's `rate_limit`.
//! - `template`: webhook body templates, printing values as JSON.

pub mod file;
pub mod plan;
pub mod rate;
pub mod render;
pub mod segment;
pub mod template;

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemTable;

pub use file::Flow;
use segment::SegmentSource;

use crate::config::Config;
use crate::identity::resolve::IDENTITY_COLUMNS;
use crate::project::{FLOW_DIR, FileError, SEGMENT_DIR, load_files};
use crate::session::{SessionSpec, workspace_session};
use crate::sql::plan_read_only;
use crate::store::{Store, StoreError};
use crate::trigger::TriggerFile;
use crate::window::empty_new_events;

/// Every `flows/*.toml`, sorted by name; files that do not parse are errors.
pub fn load_flows(project_dir: &Path) -> (Vec<Flow>, Vec<FileError>) {
    load_files(&project_dir.join(FLOW_DIR), "toml", |path, text| {
        Flow::parse(path, text)
    })
}

/// The first broken flow file that names `trigger`, or whose trigger
/// cannot be read at all.
pub fn blocking_error<'a>(errors: &'a [FileError], trigger: &str) -> Option<&'a FileError> {
    errors.iter().find(|e| {
        let text = std::fs::read_to_string(&e.path).unwrap_or_default();
        let named = text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "trigger").then(|| value.trim().trim_matches('"').to_string())
        });
        named.is_none_or(|name| name == trigger)
    })
}

/// Flow files and segments loaded for the runs of one workspace.
pub struct FlowSetup {
    pub flows: Vec<Flow>,
    pub errors: Vec<FileError>,
    pub segments: Vec<(String, SegmentSource)>,
}

impl FlowSetup {
    pub async fn load(
        config: &Config,
        store: &Store,
        workspace: &str,
    ) -> Result<FlowSetup, StoreError> {
        let (flows, errors) = load_flows(&config.project_dir);
        let segments = segments_for(config, store, workspace).await?;
        Ok(FlowSetup {
            flows,
            errors,
            segments,
        })
    }
}

/// The segments a workspace's flows can use: the project's SQL segments,
/// then the lists imported into the workspace (a SQL file wins a name clash).
pub async fn segments_for(
    config: &Config,
    store: &Store,
    workspace: &str,
) -> Result<Vec<(String, SegmentSource)>, StoreError> {
    let (mut segments, _) = segment::load_sql_segments(&config.project_dir);
    for (name, list) in segment::load_lists(store, workspace).await? {
        if !segments.iter().any(|(n, _)| *n == name) {
            segments.push((name, list));
        }
    }
    Ok(segments)
}

/// Checks every flow against the triggers, segments and actions it names,
/// and plans its `when` conditions over its trigger's columns.
pub async fn check_flows(
    config: &Config,
    store: &Store,
    triggers: &[TriggerFile],
    flows: &[Flow],
) -> Vec<FileError> {
    let mut errors = Vec::new();
    for flow in flows {
        if let Err(e) = check_flow(config, store, triggers, flow).await {
            errors.push(e);
        }
    }
    errors
}

async fn check_flow(
    config: &Config,
    store: &Store,
    triggers: &[TriggerFile],
    flow: &Flow,
) -> Result<(), FileError> {
    let text = std::fs::read_to_string(&flow.path).unwrap_or_default();
    let at = |needle: &str, reason: String| FileError {
        path: flow.path.display().to_string(),
        line: text
            .lines()
            .position(|l| l.contains(needle))
            .map_or(1, |i| i + 1),
        reason,
    };
    let Some(trigger) = triggers.iter().find(|t| t.name == flow.trigger) else {
        let known: Vec<&str> = triggers.iter().map(|t| t.name.as_str()).collect();
        return Err(at(
            "trigger",
            format!(
                "unknown trigger {:?} (known: {})",
                flow.trigger,
                known.join(", ")
            ),
        ));
    };
    let workspace = config
        .pick_workspace(trigger.workspace.as_deref())
        .map_err(|e| at("trigger", e))?;
    let segments = segments_for(config, store, &workspace.id)
        .await
        .map_err(|e| at("segments", e.to_string()))?;
    let spec = SessionSpec {
        store,
        workspace: &workspace.id,
        now: chrono::Utc::now(),
        identity_ttl: config.identity_ttl,
        events: None,
    };
    let ctx = workspace_session(&spec)
        .await
        .map_err(|e| at("trigger", e.to_string()))?;
    for name in flow.exclude_segments.iter().chain(&flow.include_segments) {
        let Some((_, source)) = segments.iter().find(|(n, _)| n == name) else {
            let known: Vec<&str> = segments.iter().map(|(n, _)| n.as_str()).collect();
            return Err(at(
                &format!("\"{name}\""),
                format!(
                    "unknown segment {name:?} (known: {}; SQL in {}/ or `tripwire import --segment`)",
                    known.join(", "),
                    SEGMENT_DIR
                ),
            ));
        };
        segment::register(&ctx, name, source)
            .await
            .map_err(|e| at(&format!("\"{name}\""), e))?;
    }
    let empty = empty_new_events().map_err(|e| at("trigger", e.to_string()))?;
    ctx.register_table("new_events", empty)
        .map_err(|e| at("trigger", e.to_string()))?;
    let output = plan_read_only(&ctx, &trigger.sql)
        .await
        .map_err(|e| at("trigger", format!("its trigger does not plan: {e}")))?;
    check_templates(flow, output.schema().as_arrow())
        .map_err(|(name, e)| at(&format!("[actions.{name}]"), format!("actions.{name}: {e}")))?;
    let columns = match_columns(output.schema().as_arrow());
    let batch = RecordBatch::new_empty(Arc::new(columns));
    let provider = MemTable::try_new(batch.schema(), vec![vec![batch]])
        .map_err(|e| at("trigger", e.to_string()))?;
    ctx.register_table("__tripwire_check", Arc::new(provider))
        .map_err(|e| at("trigger", e.to_string()))?;
    for branch in &flow.branches {
        if let Some(when) = &branch.when {
            let sql = format!("SELECT CASE WHEN ({when}) THEN 1 END FROM __tripwire_check");
            plan_read_only(&ctx, &sql)
                .await
                .map_err(|e| at(when, format!("when {when:?}: {e}")))?;
        }
    }
    Ok(())
}

/// Renders every webhook body template of `flow` against a sample match
/// typed like the trigger's `output` (strings with quotes and braces): the
/// body must come out valid JSON. The error names the action.
fn check_templates(flow: &Flow, output: &Schema) -> Result<(), (String, String)> {
    let context = render::sample_context(output);
    for (name, action) in &flow.actions {
        if let file::Action::Webhook {
            body: Some(template),
            ..
        } = action
        {
            template
                .render(&context)
                .map_err(|e| (name.clone(), format!("{e} (with a sample match)")))?;
        }
    }
    Ok(())
}

/// The columns a flow's `when` sees: the trigger's data columns and the
/// resolved contact columns.
fn match_columns(output: &Schema) -> Schema {
    let mut fields: Vec<Field> = output
        .fields()
        .iter()
        .filter(|f| !IDENTITY_COLUMNS.contains(&f.name().as_str()))
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    for name in ["email", "user_id", "client_id"] {
        fields.push(Field::new(name, DataType::Utf8, true));
    }
    Schema::new(fields)
}
