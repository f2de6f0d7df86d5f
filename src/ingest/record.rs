//! What the ingest API writes to the WAL: one self-contained record per
//! accepted event (or per rejected input kept for quarantine), so the
//! flusher can build the same table rows from it after a crash. Secrets are
//! never in a record.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::event::{EventKind, ParsedEvent};

/// One WAL record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WalRecord {
    Event(StoredEvent),
    Rejected(StoredReject),
}

impl WalRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record is plain JSON data")
    }

    pub fn decode(bytes: &[u8]) -> Result<WalRecord, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("WAL record: {e}"))
    }

    pub fn workspace(&self) -> &str {
        match self {
            WalRecord::Event(e) => &e.workspace,
            WalRecord::Rejected(r) => &r.workspace,
        }
    }
}

/// An accepted event for one workspace, its id fixed before it is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub workspace: String,
    pub received_at: i64,
    pub event_id: String,
    pub identify: bool,
    pub event_name: Option<String>,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub sent_at: Option<i64>,
    pub properties: Option<String>,
    pub traits: Option<String>,
    pub requires_identity: Option<bool>,
    pub envelope: Option<String>,
}

impl StoredEvent {
    /// The event for `workspace`; a missing id becomes a new UUIDv7, so a
    /// replay after a crash stores the same id.
    pub fn new(workspace: &str, event: &ParsedEvent, received_at: i64) -> StoredEvent {
        let owned = |v: &Option<Cow<str>>| v.as_deref().map(str::to_string);
        StoredEvent {
            workspace: workspace.to_string(),
            received_at,
            event_id: owned(&event.event_id).unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            identify: event.kind == EventKind::Identify,
            event_name: owned(&event.event_name),
            client_id: owned(&event.client_id),
            user_id: owned(&event.user_id),
            email: owned(&event.email),
            sent_at: event.sent_at,
            properties: owned(&event.properties),
            traits: owned(&event.traits),
            requires_identity: event.requires_identity,
            envelope: event.envelope.clone(),
        }
    }

    /// The event as the table writer takes it.
    pub fn parsed(&self) -> ParsedEvent<'_> {
        fn borrowed(v: &Option<String>) -> Option<Cow<'_, str>> {
            v.as_deref().map(Cow::Borrowed)
        }
        let kind = if self.identify {
            EventKind::Identify
        } else {
            EventKind::Track
        };
        let mut event = ParsedEvent::new(kind);
        event.event_id = Some(Cow::Borrowed(&self.event_id));
        event.event_name = borrowed(&self.event_name);
        event.client_id = borrowed(&self.client_id);
        event.user_id = borrowed(&self.user_id);
        event.email = borrowed(&self.email);
        event.sent_at = self.sent_at;
        event.properties = borrowed(&self.properties);
        event.traits = borrowed(&self.traits);
        event.requires_identity = self.requires_identity;
        event.envelope = self.envelope.clone();
        event
    }
}

/// The record of [`WalRecord::Event`] for an event as parsed, written
/// straight from the borrowed event: the same bytes as encoding
/// `WalRecord::Event(StoredEvent::new(workspace, event, received_at))` with
/// `event_id` as its id, without copying every field first.
pub fn encode_event(
    workspace: &str,
    event: &ParsedEvent,
    event_id: &str,
    received_at: i64,
) -> Vec<u8> {
    let record = EventRecord {
        kind: "event",
        workspace,
        received_at,
        event_id,
        identify: event.kind == EventKind::Identify,
        event_name: event.event_name.as_deref(),
        client_id: event.client_id.as_deref(),
        user_id: event.user_id.as_deref(),
        email: event.email.as_deref(),
        sent_at: event.sent_at,
        properties: event.properties.as_deref(),
        traits: event.traits.as_deref(),
        requires_identity: event.requires_identity,
        envelope: event.envelope.as_deref(),
    };
    serde_json::to_vec(&record).expect("a record is plain JSON data")
}

/// [`StoredEvent`] borrowed, in its order, behind the tag [`WalRecord`] adds.
#[derive(Serialize)]
struct EventRecord<'a> {
    kind: &'static str,
    workspace: &'a str,
    received_at: i64,
    event_id: &'a str,
    identify: bool,
    event_name: Option<&'a str>,
    client_id: Option<&'a str>,
    user_id: Option<&'a str>,
    email: Option<&'a str>,
    sent_at: Option<i64>,
    properties: Option<&'a str>,
    traits: Option<&'a str>,
    requires_identity: Option<bool>,
    envelope: Option<&'a str>,
}

/// Input the API answered but could not store as an event, kept for the
/// workspace's quarantine with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReject {
    pub workspace: String,
    pub received_at: i64,
    /// Where it came from: the endpoint, and the item's index in a batch.
    pub source: String,
    pub item: u64,
    pub reason: String,
    /// The input, without its secrets (`event::redact`).
    pub raw: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::shapes::parse_event;

    #[test]
    fn an_event_survives_the_wal_unchanged() {
        let parsed = parse_event(
            r#"{"type":"track","event":"Order","anonymousId":"a1","properties":{"v":1},
                "context":{"traits":{"email":"x@y.z"}}}"#,
        )
        .unwrap();
        let stored = StoredEvent::new("shop", &parsed, 42);
        let record = WalRecord::Event(stored.clone());
        let back = WalRecord::decode(&record.encode()).unwrap();
        assert_eq!(back, record);
        let again = stored.parsed();
        assert_eq!(again.event_name.as_deref(), Some("Order"));
        assert_eq!(again.email.as_deref(), Some("x@y.z"));
        assert_eq!(again.event_id.as_deref(), Some(stored.event_id.as_str()));
        assert_eq!(again.properties.as_deref(), Some(r#"{"v":1}"#));
    }

    #[test]
    fn an_event_encoded_borrowed_is_the_same_record() {
        for text in [
            r#"{"type":"track","event":"Order","anonymousId":"a1","messageId":"m\"1",
                "properties":{"v":"\u00e9"},"context":{"traits":{"email":"x@y.z"}}}"#,
            r#"{"type":"identify","userId":"u","traits":{"email":"e"},"timestamp":5}"#,
            r#"{"name":"n","payload":{},"client_id":"c"}"#,
        ] {
            let parsed = parse_event(text).unwrap();
            let owned = StoredEvent::new("shop", &parsed, 42);
            let borrowed = encode_event("shop", &parsed, &owned.event_id, 42);
            assert_eq!(
                String::from_utf8(borrowed).unwrap(),
                String::from_utf8(WalRecord::Event(owned).encode()).unwrap()
            );
        }
    }
}
