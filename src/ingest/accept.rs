//! The one write path of every ingest endpoint: parse and validate each
//! item, drop ids already stored, and append the events (and the rejects a
//! workspace quarantines) to the WAL. It returns only once they are durable.

use super::Ingest;
use super::record::{StoredEvent, StoredReject, WalRecord};
use super::wal::WalError;
use crate::config::Workspace;
use crate::event::now_micros;
use crate::event::redact::without_secrets;
use crate::event::shapes::parse_event;
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

/// Stores `items` (raw JSON objects) in each of `workspaces`. Invalid items
/// are rejected with their reason and, when `quarantine` is set, kept in
/// the quarantine of every workspace that keeps one.
pub async fn accept(
    ingest: &Ingest,
    workspaces: &[&Workspace],
    items: &[&str],
    source: &'static str,
    quarantine: bool,
) -> Result<Accepted, ApiError> {
    let received_at = now_micros();
    let mut accepted = Accepted::default();
    let mut records = Vec::with_capacity(items.len() * workspaces.len());
    let mut reserved: Vec<(String, String)> = Vec::new();
    {
        let seen = &ingest.seen;
        for (index, raw) in items.iter().enumerate() {
            let event = match parse_event(raw) {
                Ok(event) => event,
                Err(reason) => {
                    for workspace in workspaces.iter().filter(|w| quarantine && w.quarantine) {
                        records.push(WalRecord::Rejected(StoredReject {
                            workspace: workspace.id.clone(),
                            received_at,
                            source: source.to_string(),
                            item: index as u64,
                            reason: reason.clone(),
                            raw: without_secrets(raw),
                        }));
                    }
                    accepted.rejected.push((index, reason));
                    continue;
                }
            };
            for workspace in workspaces {
                if let Some(id) = event.event_id.as_deref() {
                    if !seen.first_time(&workspace.id, id, received_at) {
                        accepted.duplicates += 1;
                        continue;
                    }
                    reserved.push((workspace.id.clone(), id.to_string()));
                }
                let stored = StoredEvent::new(&workspace.id, &event, received_at);
                records.push(WalRecord::Event(stored));
                accepted.stored += 1;
            }
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
    records: Vec<WalRecord>,
    reserved: &[(String, String)],
) -> Result<(), ApiError> {
    let bytes = records.iter().map(WalRecord::encode).collect();
    if let Err(e) = ingest.wal.append(bytes).await {
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
fn forget(ingest: &Ingest, reserved: &[(String, String)]) {
    for (workspace, id) in reserved {
        ingest.seen.forget(workspace, id);
    }
}
