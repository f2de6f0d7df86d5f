//! The trigger endpoints of the admin API (docs/reference.md "Ingest API"): `GET /v1/triggers`,
//! `GET /v1/runs`, `POST /v1/triggers/{name}/preview`, `GET /v1/schema`, and
//! the open `GET /healthz`. Each admin handler first checks the admin key
//! ([`admin`]); every failure is an [`ApiError`], mapped to a status in
//! `http::error`.

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
use crate::http::auth::header_key;
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

/// The workspace an admin request works on (`?workspace=`, else the one
/// whose admin key was sent), once the key checks out; nothing is looked
/// up before.
pub(super) fn admin<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    workspace: Option<&str>,
) -> Result<&'a Workspace, ApiError> {
    let id = state
        .keys
        .admin(header_key(headers).as_deref(), workspace)?;
    state
        .config
        .workspace(&id)
        .ok_or_else(|| internal(format!("workspace {id:?} has keys but no configuration")))
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
    let workspace = admin(&state, &headers, query.workspace.as_deref())?;
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
    let workspace = admin(&state, &headers, query.workspace.as_deref())?;
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
    workspace: Option<String>,
    /// Over every event, not only those since the last run.
    #[serde(default)]
    all: bool,
    /// The run's clock (RFC 3339), for identity TTL.
    now: Option<DateTime<Utc>>,
}

/// `POST /v1/triggers/{name}/preview[?all=true][&now=T][&workspace=W]`: a
/// dry run; fires nothing. The key is checked before the trigger is looked
/// up, and a trigger of another workspace is not found, so trigger names
/// cannot be learnt without the workspace's admin key.
pub async fn preview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<PreviewQuery>,
) -> Result<Json<Value>, ApiError> {
    let authorized = admin(&state, &headers, query.workspace.as_deref())?;
    let (triggers, _) = load_triggers(&state.config.project_dir);
    let trigger = triggers
        .into_iter()
        .find(|t| {
            t.name == name && workspace_of(&state.config, t).is_ok_and(|w| w == authorized.id)
        })
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no trigger {name:?} in workspace {:?}",
                authorized.id
            ))
        })?;
    let workspace = authorized.id.as_str();
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
        max_failures: state.config.max_run_failures,
        identities: &state.identities,
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
    let workspace = admin(&state, &headers, query.workspace.as_deref())?;
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
