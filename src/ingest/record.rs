//! What the ingest API writes to the WAL: one self-contained record per
//! accepted event (or per rejected input kept for quarantine), so the
//! flusher can build the same table rows from it after a crash. Secrets are
//! never in a record.
//!
//! An event is written in a binary layout ([`encode_event`]): its fields
//! length-prefixed, its JSON texts (properties, traits, envelope) as sent,
//! where a JSON record escaped every quote of them and the flusher
//! unescaped them again (a tenth of a server's time under sustained load).
//! Rejected input is a JSON record, and records written as JSON by earlier
//! versions still read (a WAL replayed after an upgrade).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::event::{EventKind, ParsedEvent};

/// One WAL record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WalRecord<'a> {
    Event(StoredEvent<'a>),
    Rejected(StoredReject),
}

impl<'a> WalRecord<'a> {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            WalRecord::Event(event) => encode_event(
                &event.workspace,
                &event.parsed(),
                &event.event_id,
                event.received_at,
            ),
            WalRecord::Rejected(_) => {
                serde_json::to_vec(self).expect("a record is plain JSON data")
            }
        }
    }

    /// The record in `bytes`; a binary event's texts borrow from them.
    pub fn decode(bytes: &'a [u8]) -> Result<WalRecord<'a>, String> {
        match bytes.first() {
            Some(&BINARY_EVENT) => {
                decode_event(&bytes[1..])
                    .map(WalRecord::Event)
                    .ok_or_else(|| {
                        "WAL record: a binary event record is cut short or not UTF-8".into()
                    })
            }
            _ => serde_json::from_slice(bytes).map_err(|e| format!("WAL record: {e}")),
        }
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
pub struct StoredEvent<'a> {
    pub workspace: Cow<'a, str>,
    pub received_at: i64,
    pub event_id: Cow<'a, str>,
    pub identify: bool,
    pub event_name: Option<Cow<'a, str>>,
    pub client_id: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    pub email: Option<Cow<'a, str>>,
    pub sent_at: Option<i64>,
    pub properties: Option<Cow<'a, str>>,
    pub traits: Option<Cow<'a, str>>,
    pub requires_identity: Option<bool>,
    pub envelope: Option<Cow<'a, str>>,
}

impl<'a> StoredEvent<'a> {
    /// The event for `workspace`; a missing id becomes a new UUIDv7, so a
    /// replay after a crash stores the same id.
    pub fn new(workspace: &str, event: &ParsedEvent, received_at: i64) -> StoredEvent<'a> {
        let owned = |v: &Option<Cow<str>>| v.as_deref().map(|v| Cow::Owned(v.to_string()));
        StoredEvent {
            workspace: Cow::Owned(workspace.to_string()),
            received_at,
            event_id: owned(&event.event_id)
                .unwrap_or_else(|| Cow::Owned(uuid::Uuid::now_v7().to_string())),
            identify: event.kind == EventKind::Identify,
            event_name: owned(&event.event_name),
            client_id: owned(&event.client_id),
            user_id: owned(&event.user_id),
            email: owned(&event.email),
            sent_at: event.sent_at,
            properties: owned(&event.properties),
            traits: owned(&event.traits),
            requires_identity: event.requires_identity,
            envelope: owned(&event.envelope),
        }
    }

    /// The event as the table writer takes it.
    pub fn parsed(&self) -> ParsedEvent<'_> {
        fn borrowed<'b>(v: &'b Option<Cow<str>>) -> Option<Cow<'b, str>> {
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
        event.envelope = borrowed(&self.envelope);
        event
    }
}

/// The first byte of a binary event record (a JSON record starts with `{`).
const BINARY_EVENT: u8 = 1;

/// Marks an absent text where a length would be.
const ABSENT: u32 = u32::MAX;

/// Flags of a binary event record.
const IDENTIFY: u8 = 1;
const HAS_SENT_AT: u8 = 2;
const HAS_REQUIRES_IDENTITY: u8 = 4;
const REQUIRES_IDENTITY: u8 = 8;

/// The record of [`WalRecord::Event`] for an event as parsed, written
/// straight from the borrowed event (with `event_id` as its id): the same
/// bytes as encoding `WalRecord::Event(StoredEvent::new(…))`.
///
/// Layout, little-endian: `1`, workspace, received_at (i64), event_id,
/// flags (u8: identify, has sent_at, has requires_identity, its value),
/// sent_at (i64, if any), then event_name, client_id, user_id, email,
/// properties, traits, envelope. A text is a u32 length and its UTF-8
/// bytes; an absent one is the length `u32::MAX`.
pub fn encode_event(
    workspace: &str,
    event: &ParsedEvent,
    event_id: &str,
    received_at: i64,
) -> Vec<u8> {
    let texts = [
        event.event_name.as_deref(),
        event.client_id.as_deref(),
        event.user_id.as_deref(),
        event.email.as_deref(),
        event.properties.as_deref(),
        event.traits.as_deref(),
        event.envelope.as_deref(),
    ];
    let size = 32 + workspace.len() + event_id.len();
    let size = size
        + texts
            .iter()
            .map(|t| 4 + t.map_or(0, str::len))
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.push(BINARY_EVENT);
    put_text(&mut out, Some(workspace));
    out.extend_from_slice(&received_at.to_le_bytes());
    put_text(&mut out, Some(event_id));
    let mut flags = 0;
    if event.kind == EventKind::Identify {
        flags |= IDENTIFY;
    }
    if event.sent_at.is_some() {
        flags |= HAS_SENT_AT;
    }
    match event.requires_identity {
        Some(true) => flags |= HAS_REQUIRES_IDENTITY | REQUIRES_IDENTITY,
        Some(false) => flags |= HAS_REQUIRES_IDENTITY,
        None => {}
    }
    out.push(flags);
    if let Some(sent_at) = event.sent_at {
        out.extend_from_slice(&sent_at.to_le_bytes());
    }
    for text in texts {
        put_text(&mut out, text);
    }
    out
}

fn put_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            let length = u32::try_from(text.len()).expect("a WAL record is far below 4 GiB");
            out.extend_from_slice(&length.to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Reads a binary event record (after its first byte); `None` when it is
/// cut short or a text is not UTF-8.
fn decode_event(bytes: &[u8]) -> Option<StoredEvent<'_>> {
    let mut reader = Reader { bytes };
    let workspace = reader.text()??;
    let received_at = reader.i64()?;
    let event_id = reader.text()??;
    let flags = reader.take(1)?[0];
    let sent_at = match flags & HAS_SENT_AT {
        0 => None,
        _ => Some(reader.i64()?),
    };
    let mut text = || reader.text();
    let event = StoredEvent {
        workspace,
        received_at,
        event_id,
        identify: flags & IDENTIFY != 0,
        event_name: text()?,
        client_id: text()?,
        user_id: text()?,
        email: text()?,
        sent_at,
        properties: text()?,
        traits: text()?,
        requires_identity: (flags & HAS_REQUIRES_IDENTITY != 0)
            .then_some(flags & REQUIRES_IDENTITY != 0),
        envelope: text()?,
    };
    reader.bytes.is_empty().then_some(event)
}

/// The unread rest of a binary record.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(taken)
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A text: `Some(None)` when absent, `None` when the record is broken.
    fn text(&mut self) -> Option<Option<Cow<'a, str>>> {
        let length = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        if length == ABSENT {
            return Some(None);
        }
        let bytes = self.take(usize::try_from(length).ok()?)?;
        Some(Some(Cow::Borrowed(std::str::from_utf8(bytes).ok()?)))
    }
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
        let bytes = record.encode();
        assert_eq!(WalRecord::decode(&bytes).unwrap(), record);
        let again = stored.parsed();
        assert_eq!(again.event_name.as_deref(), Some("Order"));
        assert_eq!(again.email.as_deref(), Some("x@y.z"));
        assert_eq!(again.event_id.as_deref(), Some(stored.event_id.as_ref()));
        assert_eq!(again.properties.as_deref(), Some(r#"{"v":1}"#));
    }

    #[test]
    fn an_event_encoded_borrowed_is_the_same_record() {
        for text in [
            r#"{"type":"track","event":"Order","anonymousId":"a1","messageId":"m\"1",
                "properties":{"v":"\u00e9"},"context":{"traits":{"email":"x@y.z"}}}"#,
            r#"{"type":"identify","userId":"u","traits":{"email":"e"},"timestamp":5}"#,
            r#"{"name":"n","payload":{},"client_id":"c"}"#,
            r#"{"partnerId":"shop","type":"track","clientId":"c","sentAt":1,
                "properties":{"eventName":"e","requiresIdentity":false,"properties":{"k":[1]}}}"#,
        ] {
            let parsed = parse_event(text).unwrap();
            let owned = StoredEvent::new("shop", &parsed, 42);
            let borrowed = encode_event("shop", &parsed, &owned.event_id, 42);
            let record = WalRecord::Event(owned);
            assert_eq!(borrowed, record.encode(), "{text}");
            assert_eq!(WalRecord::decode(&borrowed).unwrap(), record, "{text}");
        }
    }

    #[test]
    fn event_records_written_as_json_by_earlier_versions_still_read() {
        let old = br#"{"kind":"event","workspace":"shop","received_at":42,"event_id":"e1","identify":false,"event_name":"Order","client_id":"a1","user_id":null,"email":null,"sent_at":7,"properties":"{\"v\":1}","traits":null,"requires_identity":true,"envelope":null}"#;
        let WalRecord::Event(event) = WalRecord::decode(old).unwrap() else {
            panic!("an event");
        };
        assert_eq!(event.properties.as_deref(), Some(r#"{"v":1}"#));
        assert_eq!(
            (event.sent_at, event.requires_identity),
            (Some(7), Some(true))
        );
        let reject = WalRecord::Rejected(StoredReject {
            workspace: "shop".into(),
            received_at: 1,
            source: "/v1/batch".into(),
            item: 3,
            reason: "bad".into(),
            raw: "{}".into(),
        });
        assert_eq!(WalRecord::decode(&reject.encode()).unwrap(), reject);
    }

    #[test]
    fn a_binary_record_cut_short_or_padded_is_an_error_not_a_panic() {
        let parsed = parse_event(r#"{"type":"identify","userId":"u","traits":{"e":"é"}}"#).unwrap();
        let bytes = encode_event("shop", &parsed, "id", 1);
        for end in 1..bytes.len() {
            let err = WalRecord::decode(&bytes[..end]).unwrap_err();
            assert!(err.contains("cut short"), "{end}: {err}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(WalRecord::decode(&padded).is_err());
        let at = bytes.len() - 7; // inside the traits' "é" (then envelope: absent)
        let mut broken = bytes.clone();
        broken[at] = 0xff;
        assert!(WalRecord::decode(&broken).is_err(), "not UTF-8");
    }
}
