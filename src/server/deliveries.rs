//! The fire ledger's admin endpoints: `GET /v1/deliveries` (rows of the
//! `deliveries` view, newest first, filtered), `POST
//! /v1/deliveries/redeliver` (what `tripwire redeliver` does), and `POST
//! /v1/runs/{run_id}/release` and `/discard` (what `tripwire release` and
//! `discard` do); `serve`'s delivery worker delivers within a tick.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::admin;
use crate::deliver::{Decision, DeliverError, DeliveryFilter, delivery_rows};
use crate::http::ApiError;

/// Rows `GET /v1/deliveries` answers unless `limit` says otherwise.
pub const DEFAULT_LISTED: usize = 100;

/// The most rows one `GET /v1/deliveries` answers.
pub const MAX_LISTED: usize = 1_000;

/// The most ids one `POST /v1/deliveries/redeliver` takes.
pub const MAX_REDELIVER_IDS: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workspace: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    flow: Option<String>,
    run_id: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/deliveries[?status=][&trigger=][&flow=][&run_id=][&limit=N][&workspace=W]`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let requested = query.as_ref().ok().and_then(|q| q.workspace.as_deref());
    let workspace = admin(&state, &headers, requested)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LISTED);
    if !(1..=MAX_LISTED).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit: {limit} is not between 1 and {MAX_LISTED}"
        )));
    }
    let filter = DeliveryFilter {
        status: query.status,
        trigger: query.trigger,
        flow: query.flow,
        run_id: query.run_id,
    };
    let batches = delivery_rows(
        &state.config,
        &state.store,
        &workspace.id,
        &filter,
        limit,
        true,
    )
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({
        "workspace": workspace.id,
        "deliveries": json_rows(&batches)?,
    })))
}

/// The rows as JSON objects (nulls kept, so every row has every column).
fn json_rows(batches: &[arrow::array::RecordBatch]) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut out);
        let refs: Vec<&arrow::array::RecordBatch> = batches.iter().collect();
        writer
            .write_batches(&refs)
            .and_then(|_| writer.finish())
            .map_err(|e| ApiError::Internal(format!("writing deliveries as JSON: {e}")))?;
    }
    if out.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&out).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The body of `POST /v1/deliveries/redeliver`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeliverBody {
    ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct RedeliverQuery {
    workspace: Option<String>,
}

/// `POST /v1/deliveries/redeliver[?workspace=W]` with `{"ids": [...]}`:
/// resets failed or dead deliveries to pending (all of them, or none with
/// every reason), as `tripwire redeliver` does.
/// `POST /v1/runs/{run_id}/release[?flow=F]`: the run's held deliveries
/// become due (the delivery loop sends them).
pub async fn release(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    path: Path<String>,
    query: Query<HeldQuery>,
) -> Result<Json<Value>, ApiError> {
    decide_held(state, headers, path, query, Decision::Release).await
}

/// `POST /v1/runs/{run_id}/discard[?flow=F]`: the run's held deliveries are
/// never sent.
pub async fn discard(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    path: Path<String>,
    query: Query<HeldQuery>,
) -> Result<Json<Value>, ApiError> {
    decide_held(state, headers, path, query, Decision::Discard).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldQuery {
    workspace: Option<String>,
    flow: Option<String>,
}

async fn decide_held(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
    Query(query): Query<HeldQuery>,
    decision: Decision,
) -> Result<Json<Value>, ApiError> {
    let workspace = admin(&state, &headers, query.workspace.as_deref())?;
    let flow = query.flow.as_deref();
    let count = crate::deliver::decide_held(
        &state.store,
        &workspace.id,
        &run_id,
        flow,
        decision,
        Utc::now(),
    )
    .await
    .map_err(|e| match e {
        DeliverError::Redeliver(m) => ApiError::BadRequest(m),
        other => ApiError::Internal(other.to_string()),
    })?;
    let done = match decision {
        Decision::Release => "released",
        Decision::Discard => "discarded",
    };
    Ok(Json(
        json!({ "workspace": workspace.id, "run_id": run_id, done: count }),
    ))
}

pub async fn redeliver(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<RedeliverQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let workspace = admin(&state, &headers, query.workspace.as_deref())?;
    let body: RedeliverBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body is not {{\"ids\": [\"<delivery_id>\", ...]}}: {e}"
        ))
    })?;
    if body.ids.is_empty() || body.ids.len() > MAX_REDELIVER_IDS {
        return Err(ApiError::BadRequest(format!(
            "ids: give 1 to {MAX_REDELIVER_IDS} delivery ids ({} given)",
            body.ids.len()
        )));
    }
    let reset = crate::deliver::redeliver(&state.store, &workspace.id, &body.ids, Utc::now())
        .await
        .map_err(|e| match e {
            DeliverError::Redeliver(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok(Json(json!({ "workspace": workspace.id, "reset": reset })))
}
