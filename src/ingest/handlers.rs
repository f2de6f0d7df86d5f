//! The ingest endpoints (docs/reference.md "Ingest API"): the Simon-style collect envelope, the
//! Segment HTTP Tracking API (`/v1/track`, `/v1/identify`, `/v1/batch`) and
//! the name/payload shape (`/v1/events`). Each reads and checks the body and
//! the key, then hands the items to [`accept`].

use std::io::Read as _;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::IngestState;
use super::accept::{Accepted, Item, accept};
use crate::config::Workspace;
use crate::event::checked;
use crate::event::fields::Fields;
use crate::event::scan::{MAX_JSON_DEPTH, check_json};
use crate::http::ApiError;
use crate::http::auth::{header_key, workspace_list};

type Answer = Result<(StatusCode, Value), ApiError>;

/// Levels a body may add around its events: `{"batch": [...]}`.
const WRAPPER_LEVELS: usize = 2;

/// Counts the request and turns the answer into a response.
fn respond(state: &IngestState, endpoint: &'static str, answer: Answer) -> Response {
    let response = match answer {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(e) => e.into_response(),
    };
    state
        .ingest
        .metrics
        .request(endpoint, response.status().as_u16());
    response
}

/// `POST /http/v1/collect`: one collect envelope.
pub async fn collect(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = collect_answer(&state, &headers, body).await;
    respond(&state, "/http/v1/collect", answer)
}

async fn collect_answer(
    state: &IngestState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let text = body_text(state, headers, body)?;
    check_event_size(state, &text, None)?;
    let envelope = json_object(&text)?;
    let debug = envelope
        .object("context")
        .ok()
        .flatten()
        .and_then(|c| Fields::of_checked(c).ok())
        .and_then(|c| c.raw("debug").map(|d| d == "true"))
        .unwrap_or(false);
    let key = string_field(&envelope, "partnerSecret").or_else(|| header_key(headers));
    let mut listed = listed_workspaces(headers, &envelope);
    if listed.is_empty() {
        let partner = string_field(&envelope, "partnerId")
            .ok_or_else(|| ApiError::BadRequest("partnerId is required".into()))?;
        listed.push(partner);
    }
    let workspaces = writable_or_refuse(state, key.as_deref(), &listed)?;
    within_rate(state, &workspaces, 1)?;
    let accepted = accept(
        &state.ingest,
        &workspaces,
        &[Item::of(&text, envelope)],
        "POST /http/v1/collect",
        !debug,
    )
    .await?;
    match accepted.rejected.first() {
        // Only a debugging sender hears why; the others' input is quarantined.
        Some((_, reason)) if debug => Err(ApiError::BadRequest(reason.clone())),
        _ => Ok((StatusCode::ACCEPTED, json!({ "success": true }))),
    }
}

/// `POST /v1/track`: one Segment track call.
pub async fn track(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = single_call(&state, &headers, body, TRACK, "POST /v1/track").await;
    respond(&state, "/v1/track", answer)
}

/// `POST /v1/identify`: one Segment identify call.
pub async fn identify(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = single_call(&state, &headers, body, IDENTIFY, "POST /v1/identify").await;
    respond(&state, "/v1/identify", answer)
}

/// The `type` a single call gets when it has none, as raw JSON.
const TRACK: &str = r#""track""#;
const IDENTIFY: &str = r#""identify""#;

async fn single_call(
    state: &IngestState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    kind: &'static str,
    source: &'static str,
) -> Answer {
    let kind: &RawValue = serde_json::from_str(kind)
        .map_err(|e| ApiError::Internal(format!("the default type {kind}: {e}")))?;
    let text = body_text(state, headers, body)?;
    check_event_size(state, &text, None)?;
    let mut call = json_object(&text)?;
    call.or_insert("type", kind.get());
    let key = header_key(headers).or_else(|| string_field(&call, "writeKey"));
    let workspaces = writable_or_refuse(state, key.as_deref(), &listed_workspaces(headers, &call))?;
    within_rate(state, &workspaces, 1)?;
    let item = Item::of(&text, call);
    let accepted = accept(&state.ingest, &workspaces, &[item], source, false).await?;
    match accepted.rejected.first() {
        Some((_, reason)) => Err(ApiError::BadRequest(reason.clone())),
        None => Ok((StatusCode::OK, json!({ "success": true }))),
    }
}

/// A batch body: Segment's `{"batch": [...]}`.
#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
    workspaces: Option<Value>,
}

/// An event of a body: its JSON text, with its fields when the body's one
/// pass read them (then they are not read again).
type BodyItem<'a> = (&'a str, Option<Fields<'a>>);

/// What a batch body holds: its events, the write key and the workspaces
/// it lists.
struct Batch<'a> {
    items: Vec<BodyItem<'a>>,
    write_key: Option<String>,
    workspaces: Vec<String>,
}

/// The batch of `text`: read in one checked pass when the body is plainly
/// one (each of `batch`, `writeKey`, `workspaces` at most once, `batch`
/// an array, `writeKey` a string), else by serde_json, whose words a
/// refusal keeps.
fn read_batch(text: &str) -> Result<Batch<'_>, ApiError> {
    if let Some(batch) = plain_batch(text) {
        return Ok(batch);
    }
    check_body(text)?;
    let body: BatchBody = serde_json::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("the body is not {{\"batch\": [...]}}: {e}")))?;
    Ok(Batch {
        items: body.batch.iter().map(|raw| (raw.get(), None)).collect(),
        write_key: body.write_key,
        workspaces: body.workspaces.as_ref().map(list_value).unwrap_or_default(),
    })
}

/// A plain batch body and its events, read in one pass: each event sits
/// two levels down, so the body's limit holds it to `MAX_JSON_DEPTH`.
fn plain_batch(text: &str) -> Option<Batch<'_>> {
    let (body, items) = checked::object_and_items(text, MAX_JSON_DEPTH + WRAPPER_LEVELS, "batch")?;
    let body = Fields::of_members(body);
    let once = |key: &str| body.pairs().iter().filter(|(k, _)| k == key).count() <= 1;
    if !(once("batch") && once("writeKey") && once("workspaces")) {
        return None;
    }
    let items = body_items(items?);
    let write_key = match body.raw("writeKey") {
        None => None,
        Some(raw) if raw.starts_with('"') => Some(serde_json::from_str(raw).ok()?),
        Some(_) => return None,
    };
    let workspaces = match body.raw("workspaces") {
        None => Vec::new(),
        Some(raw) => list_value(&serde_json::from_str(raw).ok()?),
    };
    Some(Batch {
        items,
        write_key,
        workspaces,
    })
}

/// `POST /v1/batch`: many calls; invalid items are answered with their
/// index and reason and kept in quarantine, the others stored.
pub async fn batch(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = batch_answer(&state, &headers, body).await;
    respond(&state, "/v1/batch", answer)
}

async fn batch_answer(
    state: &IngestState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let text = body_text(state, headers, body)?;
    let body = read_batch(&text)?;
    let items = checked_items(state, body.items)?;
    let key = header_key(headers).or(body.write_key);
    let mut listed = header_workspaces(headers);
    if listed.is_empty() {
        listed = body.workspaces;
    }
    let workspaces = writable_or_refuse(state, key.as_deref(), &listed)?;
    within_rate(state, &workspaces, items.len())?;
    let accepted = accept(&state.ingest, &workspaces, &items, "POST /v1/batch", true).await?;
    let mut answer = json!({ "success": true });
    add_rejections(&mut answer, &accepted);
    Ok((StatusCode::OK, answer))
}

/// `POST /v1/events`: one `{"name", "payload", …}` event, or an array of them.
pub async fn events(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = events_answer(&state, &headers, body).await;
    respond(&state, "/v1/events", answer)
}

async fn events_answer(
    state: &IngestState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let text = body_text(state, headers, body)?;
    let items: Vec<Item> = if text.trim_start().starts_with('[') {
        checked_items(state, read_array(&text)?)?
    } else {
        let object = json_object(&text)?;
        check_batch(state, &[&text])?;
        vec![Item::of(&text, object)]
    };
    let listed = header_workspaces(headers);
    let workspaces = writable_or_refuse(state, header_key(headers).as_deref(), &listed)?;
    within_rate(state, &workspaces, items.len())?;
    let single = items.len() == 1;
    let accepted = accept(
        &state.ingest,
        &workspaces,
        &items,
        "POST /v1/events",
        !single,
    )
    .await?;
    if single && let Some((_, reason)) = accepted.rejected.first() {
        return Err(ApiError::BadRequest(reason.clone()));
    }
    let mut answer = json!({ "accepted": items.len() - accepted.rejected.len() });
    add_rejections(&mut answer, &accepted);
    Ok((StatusCode::CREATED, answer))
}

/// The events of an array body: read in one checked pass (each event sits
/// one level down, so a limit one above `MAX_JSON_DEPTH` holds it to it),
/// else by serde_json, whose words a refusal keeps.
fn read_array(text: &str) -> Result<Vec<BodyItem<'_>>, ApiError> {
    if let Some(elements) = checked::array(text, MAX_JSON_DEPTH + 1) {
        return Ok(body_items(elements));
    }
    check_body(text)?;
    let raws: Vec<&RawValue> = serde_json::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a JSON array: {e}")))?;
    Ok(raws.iter().map(|raw| (raw.get(), None)).collect())
}

/// Elements the checked pass split, as a body's events.
fn body_items(elements: Vec<checked::Element<'_>>) -> Vec<BodyItem<'_>> {
    (elements.into_iter())
        .map(|(raw, members)| (raw, members.map(Fields::of_members)))
        .collect()
}

/// A body's events within the batch limits, as items: those the body's
/// pass read taken as they are, the others read on their own.
fn checked_items<'a>(
    state: &IngestState,
    items: Vec<BodyItem<'a>>,
) -> Result<Vec<Item<'a>>, ApiError> {
    let raws: Vec<&str> = items.iter().map(|(raw, _)| *raw).collect();
    check_batch(state, &raws)?;
    Ok((items.into_iter())
        .map(|(raw, fields)| match fields {
            Some(fields) => Item::checked(raw, fields),
            None => Item::read(raw),
        })
        .collect())
}

fn add_rejections(answer: &mut Value, accepted: &Accepted) {
    if accepted.rejected.is_empty() {
        return;
    }
    let rejected: Vec<Value> = accepted
        .rejected
        .iter()
        .map(|(index, reason)| json!({ "index": index, "reason": reason }))
        .collect();
    answer["rejected"] = Value::from(rejected);
}

/// The body as text: size-limited, gunzipped when `Content-Encoding: gzip`.
fn body_text(
    state: &IngestState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<String, ApiError> {
    let limit = state.config.ingest.max_request_bytes;
    let too_large =
        || ApiError::TooLarge(format!("the request is over the limit of {limit} bytes"));
    let bytes = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let bytes = if gzipped {
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut inflated)
            .map_err(|e| ApiError::BadRequest(format!("the gzip body does not inflate: {e}")))?;
        if inflated.len() > limit {
            return Err(too_large());
        }
        inflated
    } else {
        bytes.to_vec()
    };
    String::from_utf8(bytes).map_err(|_| ApiError::BadRequest("the body is not UTF-8".into()))
}

/// Refuses a body nested too deep (or with a bad escape or number) before
/// serde_json recurses into it: the check a body the one-pass reader
/// refused gets. Each event is held to MAX_JSON_DEPTH again when it is
/// parsed, as on import.
fn check_body(text: &str) -> Result<(), ApiError> {
    check_json(text, MAX_JSON_DEPTH + WRAPPER_LEVELS).map_err(ApiError::BadRequest)
}

fn check_event_size(state: &IngestState, text: &str, index: Option<usize>) -> Result<(), ApiError> {
    let limit = state.config.ingest.max_event_bytes;
    if text.len() <= limit {
        return Ok(());
    }
    let which = index.map_or("the event".to_string(), |i| format!("item {i}"));
    Err(ApiError::TooLarge(format!(
        "{which} is {} bytes, over the limit of {limit} bytes per event",
        text.len()
    )))
}

fn check_batch(state: &IngestState, items: &[&str]) -> Result<(), ApiError> {
    let limit = state.config.ingest.max_batch_items;
    if items.len() > limit {
        return Err(ApiError::TooLarge(format!(
            "the batch has {} items, over the limit of {limit}",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .try_for_each(|(i, item)| check_event_size(state, item, Some(i)))
}

/// The body's top-level fields: the one read of a single-event body.
fn json_object(text: &str) -> Result<Fields<'_>, ApiError> {
    if let Some(fields) = Fields::checked(text, MAX_JSON_DEPTH + WRAPPER_LEVELS) {
        return Ok(fields);
    }
    check_body(text)?;
    Fields::parse(text).map_err(|_| not_an_object(text))
}

/// Why a body that does not read as an object was refused (serde_json's
/// own words, as the API has always answered).
fn not_an_object(text: &str) -> ApiError {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => ApiError::BadRequest("the body must be a JSON object".into()),
        Err(e) => ApiError::BadRequest(format!("the body is not JSON: {e}")),
    }
}

/// A field that is a JSON string (not a number), unescaped.
fn string_field(object: &Fields, key: &str) -> Option<String> {
    object
        .raw(key)
        .filter(|raw| raw.starts_with('"'))
        .and_then(|raw| serde_json::from_str(raw).ok())
}

/// Fan-out targets: the `X-Workspaces` header, else the body's `workspaces`.
fn listed_workspaces(headers: &HeaderMap, body: &Fields) -> Vec<String> {
    let listed = header_workspaces(headers);
    if !listed.is_empty() {
        return listed;
    }
    body.raw("workspaces")
        .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
        .map(|value| list_value(&value))
        .unwrap_or_default()
}

fn header_workspaces(headers: &HeaderMap) -> Vec<String> {
    headers
        .get("x-workspaces")
        .and_then(|v| v.to_str().ok())
        .map(workspace_list)
        .unwrap_or_default()
}

/// `"a,b"` or `["a", "b"]`.
fn list_value(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => workspace_list(text),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Takes `events` from each workspace's `max_events_per_second`, or
/// answers 429 with how long to wait.
fn within_rate(
    state: &IngestState,
    workspaces: &[&Workspace],
    events: usize,
) -> Result<(), ApiError> {
    let keys: Vec<&str> = workspaces.iter().map(|w| w.id.as_str()).collect();
    let now = crate::event::now_micros();
    state
        .ingest
        .limiter
        .take(&keys, events as u64, now)
        .map_err(|wait| ApiError::RateLimited {
            message: format!(
                "over max_events_per_second for this key: retry in {:.1}s",
                wait.as_secs_f64()
            ),
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        })
}

/// The workspaces `key` may write to (see `Keyring::writable`).
fn writable_or_refuse<'a>(
    state: &'a IngestState,
    key: Option<&str>,
    listed: &[String],
) -> Result<Vec<&'a Workspace>, ApiError> {
    let ids = state.keys.writable(key, listed)?;
    Ok(ids
        .iter()
        .filter_map(|id| state.config.workspace(id))
        .collect())
}
