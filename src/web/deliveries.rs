//! `GET /deliveries`: the fire ledger (the `deliveries` view, newest
//! first, as `GET /v1/deliveries` reads it: `deliver::delivery_rows`),
//! filtered by status, trigger, flow and run id, at most `limit` rows; and
//! its buttons, which call what the admin API calls: redeliver a failed or
//! dead delivery (`deliver::redeliver`), release or discard a run's held
//! deliveries (`deliver::decide_held`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::Web;
use super::auth::{Viewer, posted};
use super::cells::Table;
use super::form::Fields;
use super::page::Frame;
use crate::deliver::{Decision, DeliverError, DeliveryFilter, decide_held, delivery_rows};

/// Rows the page lists unless `limit` says otherwise.
pub const DEFAULT_LISTED: usize = 100;

/// The most rows the page lists.
pub const MAX_LISTED: usize = 1_000;

/// The columns the page shows, in order (the payload is left out: it is
/// the request body, long, and in the `deliveries` table for SQL).
const SHOWN: [&str; 16] = [
    "status",
    "trigger",
    "flow",
    "action",
    "contact",
    "variant",
    "branch",
    "attempts",
    "last_error",
    "reason",
    "planned_at",
    "delivered_at",
    "next_attempt_at",
    "data",
    "run_id",
    "delivery_id",
];

/// The filter fields, as the form and the address name them.
const FILTERS: [&str; 5] = ["status", "trigger", "flow", "run_id", "limit"];

/// `GET /deliveries[?status=][&trigger=][&flow=][&run_id=][&limit=]`.
pub async fn page(
    State(web): State<Arc<Web>>,
    viewer: Viewer,
    RawQuery(query): RawQuery,
) -> Response {
    let filters = Fields::parse(query.unwrap_or_default().as_bytes());
    show(&web, &viewer, &filters, None, None).await
}

/// `POST /deliveries/redeliver` with `id` (one or more): failed or dead
/// deliveries become due again.
pub async fn redeliver(State(web): State<Arc<Web>>, viewer: Viewer, body: Bytes) -> Response {
    let form = match posted(&web, &viewer, &body) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let ids = form.all("id");
    if ids.is_empty() {
        let error = "id: choose a delivery to redeliver".to_string();
        return show(&web, &viewer, &form, None, Some(error)).await;
    }
    match crate::deliver::redeliver(&web.store, &viewer.workspace, &ids, Utc::now()).await {
        Ok(n) => {
            let notice =
                format!("{n} delivery(ies) reset to pending: serve delivers them within a second");
            show(&web, &viewer, &form, Some(notice), None).await
        }
        Err(e) => show(&web, &viewer, &form, None, Some(refusal(e))).await,
    }
}

/// `POST /deliveries/release` with `run` (and optionally `for_flow`).
pub async fn release(State(web): State<Arc<Web>>, viewer: Viewer, body: Bytes) -> Response {
    decide(&web, &viewer, &body, Decision::Release).await
}

/// `POST /deliveries/discard` with `run` (and optionally `for_flow`).
pub async fn discard(State(web): State<Arc<Web>>, viewer: Viewer, body: Bytes) -> Response {
    decide(&web, &viewer, &body, Decision::Discard).await
}

async fn decide(web: &Web, viewer: &Viewer, body: &[u8], decision: Decision) -> Response {
    let form = match posted(web, viewer, body) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let Some(run) = form.filled("run") else {
        return show(
            web,
            viewer,
            &form,
            None,
            Some("run: which run's held deliveries?".into()),
        )
        .await;
    };
    let flow = form.filled("for_flow");
    match decide_held(
        &web.store,
        &viewer.workspace,
        run,
        flow,
        decision,
        Utc::now(),
    )
    .await
    {
        Ok(n) => {
            let notice = match decision {
                Decision::Release => {
                    format!("{n} held delivery(ies) of run {run} released: serve sends them")
                }
                Decision::Discard => {
                    format!("{n} held delivery(ies) of run {run} discarded: never sent")
                }
            };
            show(web, viewer, &form, Some(notice), None).await
        }
        Err(e) => show(web, viewer, &form, None, Some(refusal(e))).await,
    }
}

/// What the operator is told when an action is refused.
fn refusal(e: DeliverError) -> String {
    match e {
        DeliverError::Redeliver(m) => m,
        other => format!("the ledger could not be changed: {other}"),
    }
}

/// The page for `filters` (the address's, or the fields a button carried
/// along), with a notice or error line.
async fn show(
    web: &Web,
    viewer: &Viewer,
    filters: &Fields,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let chosen = |name: &str| filters.filled(name).map(str::to_string);
    let filter = DeliveryFilter {
        status: chosen("status"),
        trigger: chosen("trigger"),
        flow: chosen("flow"),
        run_id: chosen("run_id"),
    };
    let values: serde_json::Map<String, Value> = FILTERS
        .iter()
        .map(|name| {
            (
                name.to_string(),
                json!(filters.filled(name).unwrap_or_default()),
            )
        })
        .collect();
    let (limit, limit_error) = limit_of(filters.filled("limit"));
    let error = error.or(limit_error);
    let status = match (&error, notice.is_some()) {
        (Some(_), false) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let frame = Frame::new("Deliveries", "deliveries", Some(viewer))
        .notice(notice)
        .error(error);
    let rows = delivery_rows(
        &web.config,
        &web.store,
        &viewer.workspace,
        &filter,
        limit,
        false,
    )
    .await;
    let table = match rows
        .map_err(|e| e.to_string())
        .and_then(|b| Table::from_batches(&b, limit))
    {
        Ok(table) => table,
        Err(e) => {
            return web
                .pages
                .message(StatusCode::INTERNAL_SERVER_ERROR, frame, &e);
        }
    };
    let context = json!({
        "filters": values,
        "columns": SHOWN,
        "rows": rows_of(&table),
        "limit": limit,
        "max_limit": MAX_LISTED,
        "statuses": ["pending", "delivered", "failed", "dead", "held", "discarded", "held_out", "filtered", "shadow"],
    });
    web.pages.render(status, frame, "deliveries.html", context)
}

/// The rows as the template lists them: the shown cells, and which
/// buttons each row gets.
fn rows_of(table: &Table) -> Vec<Value> {
    (0..table.rows.len())
        .map(|i| {
            let status = table.cell(i, "status").unwrap_or_default();
            let cells: Vec<Option<&str>> = SHOWN.iter().map(|c| table.cell(i, c)).collect();
            json!({
                "cells": cells,
                "status": status,
                "delivery_id": table.cell(i, "delivery_id"),
                "run_id": table.cell(i, "run_id"),
                "flow": table.cell(i, "flow"),
                "redeliver": matches!(status, "failed" | "dead"),
                "held": status == "held",
            })
        })
        .collect()
}

/// The rows to list: the form's `limit` when it is a whole number from 1
/// to [`MAX_LISTED`], else the default and the reason.
pub fn limit_of(text: Option<&str>) -> (usize, Option<String>) {
    let Some(text) = text else {
        return (DEFAULT_LISTED, None);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LISTED).contains(&n) => (n, None),
        _ => (
            DEFAULT_LISTED,
            Some(format!(
                "limit: {text:?} is not a number from 1 to {MAX_LISTED}"
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded_and_a_bad_one_says_why() {
        assert_eq!(limit_of(None), (DEFAULT_LISTED, None));
        assert_eq!(limit_of(Some("5")), (5, None));
        let (n, error) = limit_of(Some("0"));
        assert_eq!(n, DEFAULT_LISTED);
        assert!(error.unwrap().starts_with("limit: \"0\""));
        assert!(limit_of(Some("1001")).1.is_some());
        assert!(limit_of(Some("ten")).1.is_some());
    }
}
