//! The one write path of every ingest endpoint: validate each item (read
//! once by its handler), drop ids already stored, and append the events
//! (and the rejects a workspace quarantines) to the WAL. It returns only
//! once they are durable.
//!
//! Each item's JSON is read once: the handler reads it into [`Fields`]
//! (checked by `check_json` first), and the event is taken from those
//! fields and written to its WAL record without another pass or copy.
//! Parsing holds no lock; the dedupe index locks one of its shards per id.

use super::Ingest;
use super::record::{StoredReject, WalRecord, encode_event};
use super::wal::WalError;
use crate::config::Workspace;
use crate::event::fields::Fields;
use crate::event::now_micros;
use crate::event::redact::without_secrets;
use crate::event::scan::{MAX_JSON_DEPTH, check_json};
use crate::event::shapes::event_from_fields;
use crate::http::ApiError;

/// What became of a request's items.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Events stored (counted once per workspace they went to).
    pub stored: usize,
    /// Events whose id the workspace already had within the dedupe window.
    pub duplicates: usize,
    /// Items that are not valid events: (index in the request, reason).
    pub rejected: Vec<(usize, String)>,
}

/// One item of a request: its text (kept in quarantine when invalid) and
/// its top-level fields, or why it is not an event object.
#[derive(Debug, Clone)]
pub struct Item<'a> {
    pub raw: &'a str,
    pub fields: Result<Fields<'a>, String>,
}

impl<'a> Item<'a> {
    /// Checks `raw` (grammar, depth, escapes, numbers) and reads its fields.
    pub fn read(raw: &'a str) -> Item<'a> {
        let fields = Fields::read(raw, MAX_JSON_DEPTH);
        Item { raw, fields }
    }

    /// An item a checked pass read whole, with its depth counted from
    /// itself (an event of a batch or array body, split in the body's pass).
    pub fn checked(raw: &'a str, fields: Fields<'a>) -> Item<'a> {
        Item {
            raw,
            fields: Ok(fields),
        }
    }

    /// An item whose fields the handler has read already (to route it).
    pub fn of(raw: &'a str, fields: Fields<'a>) -> Item<'a> {
        let fields = check_json(raw, MAX_JSON_DEPTH).map(|()| fields);
        Item { raw, fields }
    }
}

/// Stores `items` in each of `workspaces`. Invalid items are rejected with
/// their reason and, when `quarantine` is set, kept in the quarantine of
/// every workspace that keeps one.
pub async fn accept(
    ingest: &Ingest,
    workspaces: &[&Workspace],
    items: &[Item<'_>],
    source: &'static str,
    quarantine: bool,
) -> Result<Accepted, ApiError> {
    let received_at = now_micros();
    let mut accepted = Accepted::default();
    let mut records = Vec::with_capacity(items.len() * workspaces.len());
    let mut reserved: Vec<(&str, String)> = Vec::new();
    let seen = &ingest.seen;
    for (index, item) in items.iter().enumerate() {
        let parsed = match &item.fields {
            Ok(fields) => event_from_fields(fields),
            Err(reason) => Err(reason.clone()),
        };
        let event = match parsed {
            Ok(event) => event,
            Err(reason) => {
                for workspace in workspaces.iter().filter(|w| quarantine && w.quarantine) {
                    let reject = StoredReject {
                        workspace: workspace.id.clone(),
                        received_at,
                        source: source.to_string(),
                        item: index as u64,
                        reason: reason.clone(),
                        raw: without_secrets(item.raw),
                    };
                    records.push(WalRecord::Rejected(reject).encode());
                }
                accepted.rejected.push((index, reason));
                continue;
            }
        };
        for workspace in workspaces {
            let fresh_id;
            let id = match event.event_id.as_deref() {
                Some(id) => {
                    if !seen.first_time(&workspace.id, id, received_at) {
                        accepted.duplicates += 1;
                        continue;
                    }
                    reserved.push((&workspace.id, id.to_string()));
                    id
                }
                // Fixed before it is acknowledged, so a replay stores the same id.
                None => {
                    fresh_id = uuid::Uuid::now_v7().to_string();
                    &fresh_id
                }
            };
            records.push(encode_event(&workspace.id, &event, id, received_at));
            accepted.stored += 1;
        }
    }
    if !records.is_empty() {
        append(ingest, records, &reserved).await?;
        ingest.note_unflushed(received_at);
    }
    // Counted for every answered request, all-duplicate ones included.
    ingest.metrics.accepted(
        accepted.stored as u64,
        accepted.rejected.len() as u64,
        accepted.duplicates as u64,
    );
    Ok(accepted)
}

/// Appends the records and waits until they are durable; on failure the
/// reserved ids are forgotten, so the sender's retry is stored.
async fn append(
    ingest: &Ingest,
    records: Vec<Vec<u8>>,
    reserved: &[(&str, String)],
) -> Result<(), ApiError> {
    if let Err(e) = ingest.wal.append(records).await {
        forget(ingest, reserved);
        return Err(match e {
            WalError::Full => ApiError::Overloaded(
                "the server is busy writing earlier events: retry shortly".into(),
            ),
            WalError::Backlog { .. } => ApiError::Overloaded(format!(
                "{e}: the server is still committing earlier events, retry shortly"
            )),
            WalError::Closed => ApiError::Overloaded("the server is shutting down".into()),
            // Transient until proven otherwise: the log recovers by itself.
            WalError::Failed(reason) => ApiError::Overloaded(format!(
                "the events could not be stored durably ({reason}): retry shortly"
            )),
            other => ApiError::Internal(format!("write-ahead log: {other}")),
        });
    }
    Ok(())
}

/// Un-reserves ids whose request was not acknowledged, so a retry is stored.
fn forget(ingest: &Ingest, reserved: &[(&str, String)]) {
    for (workspace, id) in reserved {
        ingest.seen.forget(workspace, id);
    }
}
