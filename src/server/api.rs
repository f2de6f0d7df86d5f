//! The trigger endpoints of the HTTP API (docs/reference.md "Ingest API"): `GET /v1/triggers`,
//! `GET /v1/runs`, `POST /v1/triggers/{name}/preview`, and `GET /healthz`.
//! Every failure is an [`ApiError`], mapped to a status in `server::error`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::config::Workspace;
use crate::http::ApiError;
use crate::http::auth::{Refusal, authorize};
use crate::run::{RunRequest, run_trigger};
use crate::sql::limits::within;
use crate::trigger::load_triggers;
use crate::trigger::status::{recent_runs, trigger_rows, workspace_of};

/// Runs a history request returns unless `limit` says otherwise.
const DEFAULT_RUNS: usize = 100;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Over `query_timeout`: the analyst's query to narrow (or the key to raise).
fn too_slow(e: crate::sql::QueryError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// The workspace a request names (or the only one), once its key checks out.
fn authorized<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    workspace: Option<&str>,
) -> Result<&'a Workspace, ApiError> {
    let workspace = state
        .config
        .pick_workspace(workspace)
        .map_err(ApiError::BadRequest)?;
    authorize(headers, workspace).map_err(|refusal| {
        ApiError::Unauthorized(match refusal {
            Refusal::Missing => format!(
                "workspace {:?} needs its key as a Bearer token",
                workspace.id
            ),
            Refusal::Wrong => format!("the key is not valid for workspace {:?}", workspace.id),
        })
    })?;
    Ok(workspace)
}

/// `GET /healthz`: 200 while ingest makes progress; 503 with the reason
/// while the write-ahead log cannot write or the flusher cannot commit.
pub async fn healthz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    match state.ingest.health() {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "reason": reason })),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct TriggersQuery {
    workspace: Option<String>,
}

/// `GET /v1/triggers[?workspace=W]`: the workspace's triggers and any broken files.
pub async fn triggers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<TriggersQuery>,
) -> Result<Json<Value>, ApiError> {
    let workspace = authorized(&state, &headers, query.workspace.as_deref())?;
    let listing = trigger_rows(&state.config, &state.store, Some(&workspace.id), Utc::now());
    let (rows, errors) = within(state.config.limits.query_timeout, listing)
        .await
        .map_err(too_slow)?
        .map_err(internal)?;
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| json!({ "path": e.path, "line": e.line, "reason": e.reason }))
        .collect();
    Ok(Json(json!({ "triggers": rows, "errors": errors })))
}

#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    workspace: Option<String>,
    trigger: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/runs[?trigger=NAME][&workspace=W][&limit=N]`: recent runs, newest first.
pub async fn runs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let workspace = authorized(&state, &headers, query.workspace.as_deref())?;
    let limit = query.limit.unwrap_or(DEFAULT_RUNS);
    let listing = recent_runs(
        &state.config,
        &state.store,
        &workspace.id,
        query.trigger.as_deref(),
        limit,
    );
    let runs = within(state.config.limits.query_timeout, listing)
        .await
        .map_err(too_slow)?
        .map_err(internal)?;
    Ok(Json(json!({ "runs": runs })))
}

#[derive(Debug, Deserialize)]
pub struct PreviewQuery {
    /// Over every event, not only those since the last run.
    #[serde(default)]
    all: bool,
    /// The run's clock (RFC 3339), for identity TTL.
    now: Option<DateTime<Utc>>,
}

/// `POST /v1/triggers/{name}/preview[?all=true][&now=T]`: a dry run; fires nothing.
pub async fn preview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<PreviewQuery>,
) -> Result<Json<Value>, ApiError> {
    let (triggers, _) = load_triggers(&state.config.project_dir);
    let trigger = triggers
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no trigger {name:?}")))?;
    let workspace = workspace_of(&state.config, &trigger).map_err(ApiError::BadRequest)?;
    authorized(&state, &headers, Some(workspace))?;
    let setup = crate::flow::FlowSetup::load(&state.config, &state.store, workspace)
        .await
        .map_err(internal)?;
    let request = RunRequest {
        store: &state.store,
        workspace,
        trigger: &trigger,
        now: query.now.unwrap_or_else(Utc::now),
        identity_ttl: state.config.identity_ttl,
        commit: false,
        whole_history: query.all,
        flows: &setup.flows,
        segments: &setup.segments,
        flow_errors: &setup.errors,
    };
    let outcome = within(state.config.limits.query_timeout, run_trigger(&request))
        .await
        .map_err(too_slow)?
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let matches: Vec<Value> = outcome
        .matches
        .iter()
        .map(|m| {
            json!({
                "email": m.email, "user_id": m.user_id, "client_id": m.client_id,
                "contact": m.contact, "event_id": m.event_id,
                "data": serde_json::from_str::<Value>(&m.data).unwrap_or(Value::Null),
            })
        })
        .collect();
    let run = &outcome.run;
    Ok(Json(json!({
        "trigger": run.trigger,
        "from_version": run.from_version,
        "to_version": run.to_version,
        "matched": run.matched,
        "resolved": run.resolved,
        "unresolved": run.unresolved,
        "dropped": run.dropped,
        "matches": matches,
    })))
}

#[derive(Debug, Deserialize)]
pub struct SchemaQuery {
    workspace: Option<String>,
}

/// `GET /v1/schema[?workspace=W]`: learned event names and fields, with
/// types, counts and first/last seen; `unlearned` counts the events whose
/// name came after `max_learned_names` was reached.
pub async fn schema(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<SchemaQuery>,
) -> Result<Json<Value>, ApiError> {
    let workspace = authorized(&state, &headers, query.workspace.as_deref())?;
    let learned = state
        .ingest
        .schemas
        .lock()
        .map_err(|_| internal("the schema catalog is unusable"))?
        .get(&workspace.id)
        .cloned();
    let Some(learned) = learned else {
        return Err(ApiError::NotFound(format!(
            "workspace {:?} does not learn (learning = false)",
            workspace.id
        )));
    };
    Ok(Json(json!({
        "workspace": workspace.id,
        "fields": crate::ingest::learn::rows(&learned),
        "unlearned": learned.unlearned,
    })))
}
