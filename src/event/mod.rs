//! The event model: one parsed event in any of the accepted shapes, before it
//! becomes a row of the `events` table (docs/reference.md "Tables").
//!
//! - `fields`: a JSON object read once, values kept raw.
//! - `redact`: secrets taken out of rejected input before it is kept.
//! - `shapes`: the three API shapes (collect envelope, Segment, name/payload).
//! - `tabular`: CSV and Parquet rows with the table's column names.
//! - `batch`: the Arrow schema and the builder that turns events into batches.

pub mod batch;
pub mod fields;
pub mod redact;
pub mod shapes;
pub mod tabular;

use std::borrow::Cow;

use chrono::{DateTime, NaiveDateTime, Utc};

pub use batch::{EventBatchBuilder, events_schema};

/// `track` or `identify`: the two kinds of event tripwire stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Track,
    Identify,
}

impl EventKind {
    pub fn parse(text: &str) -> Result<EventKind, String> {
        match text {
            "track" => Ok(EventKind::Track),
            "identify" => Ok(EventKind::Identify),
            other => Err(format!(
                "type {other:?} is not supported (tripwire stores \"track\" and \"identify\")"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Track => "track",
            EventKind::Identify => "identify",
        }
    }
}

/// One valid event, borrowing from its input line where it can.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEvent<'a> {
    /// The workspace the event names itself (a collect envelope's `partnerId`).
    pub workspace: Option<Cow<'a, str>>,
    /// The collect envelope's `partnerSecret`: checked, never stored.
    pub secret: Option<Cow<'a, str>>,
    pub event_id: Option<Cow<'a, str>>,
    pub kind: EventKind,
    pub event_name: Option<Cow<'a, str>>,
    pub client_id: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    pub email: Option<Cow<'a, str>>,
    /// Event time in microseconds since the epoch; `None` means "when received".
    pub sent_at: Option<i64>,
    /// JSON object text.
    pub properties: Option<Cow<'a, str>>,
    /// JSON object text.
    pub traits: Option<Cow<'a, str>>,
    pub requires_identity: Option<bool>,
    /// Every other field the sender included, as a JSON object (never dropped).
    pub envelope: Option<String>,
}

impl<'a> ParsedEvent<'a> {
    pub fn new(kind: EventKind) -> ParsedEvent<'a> {
        ParsedEvent {
            workspace: None,
            secret: None,
            event_id: None,
            kind,
            event_name: None,
            client_id: None,
            user_id: None,
            email: None,
            sent_at: None,
            properties: None,
            traits: None,
            requires_identity: None,
            envelope: None,
        }
    }

    /// The rules every shape shares: a track has a name, an identify maps to
    /// someone, and every event says who it is about.
    pub fn validate(self) -> Result<ParsedEvent<'a>, String> {
        let present = |v: &Option<Cow<'a, str>>| v.as_deref().is_some_and(|s| !s.is_empty());
        match self.kind {
            EventKind::Track if !present(&self.event_name) => {
                return Err("a track event needs an event name".into());
            }
            EventKind::Identify if !present(&self.user_id) && !present(&self.email) => {
                return Err("an identify call needs a user id or an email".into());
            }
            _ => {}
        }
        if !present(&self.client_id) && !present(&self.user_id) && !present(&self.email) {
            return Err("the event names nobody: give a client id, user id or email".into());
        }
        Ok(self)
    }
}

/// Parses an event time: epoch milliseconds, RFC 3339, or a date-time
/// without zone (taken as UTC). Returns microseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(millis) = text.parse::<i64>() {
        return DateTime::from_timestamp_millis(millis)
            .map(|t| t.timestamp_micros())
            .ok_or_else(|| format!("{millis} is out of range for epoch milliseconds"));
    }
    if let Ok(millis) = text.parse::<f64>() {
        return Ok((millis * 1000.0) as i64);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Ok(t.timestamp_micros());
    }
    Err(format!(
        "{text:?} is not a time (epoch milliseconds or RFC 3339 like 2026-01-31T12:00:00Z)"
    ))
}

/// The current time in microseconds since the epoch.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1524776691259"), Ok(1_524_776_691_259_000));
        assert_eq!(
            parse_time("2018-04-26T21:04:51.259Z"),
            Ok(1_524_776_691_259_000)
        );
        assert_eq!(
            parse_time("2018-04-26T21:04:51.259"),
            Ok(1_524_776_691_259_000)
        );
        assert_eq!(
            parse_time("2018-04-26 21:04:51.259"),
            Ok(1_524_776_691_259_000)
        );
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
    }

    #[test]
    fn validation_names_the_missing_part() {
        let track = ParsedEvent::new(EventKind::Track);
        assert!(track.clone().validate().unwrap_err().contains("event name"));
        let mut named = track;
        named.event_name = Some("x".into());
        assert!(
            named
                .clone()
                .validate()
                .unwrap_err()
                .contains("names nobody")
        );
        named.client_id = Some("c".into());
        assert!(named.validate().is_ok());
        let mut identify = ParsedEvent::new(EventKind::Identify);
        identify.client_id = Some("c".into());
        assert!(
            identify
                .validate()
                .unwrap_err()
                .contains("user id or an email")
        );
    }
}
