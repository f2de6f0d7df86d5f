//! The event model: one parsed event in any of the accepted shapes, before it
//! becomes a row of the `events` table (docs/reference.md "Tables").
//!
//! - `scan`: nesting depth and escapes, checked before any parser runs.
//! - `checked`: a JSON object checked and split into members in one pass.
//! - `fields`: a JSON object read once, values kept raw.
//! - `members`: the members of an object already checked.
//! - `structural`: where a nested value ends, 64 bytes at a time.
//! - `redact`: secrets taken out of rejected input before it is kept.
//! - `shapes`: the three API shapes (collect envelope, Segment, name/payload).
//! - `tabular`: CSV and Parquet rows with the table's column names.
//! - `batch`: the Arrow schema and the builder that turns events into batches.

pub mod batch;
pub mod checked;
pub mod fields;
pub mod members;
pub mod redact;
pub mod scan;
pub mod shapes;
pub(crate) mod structural;
pub mod tabular;

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

pub use batch::{EventBatchBuilder, Footprint, events_schema};

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
    pub envelope: Option<Cow<'a, str>>,
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

/// The earliest event time accepted: 1970-01-01T00:00:00Z, in microseconds.
pub const MIN_TIME_MICROS: i64 = 0;
/// The first event time refused: 2200-01-01T00:00:00Z, in microseconds. A
/// time outside [`MIN_TIME_MICROS`, `MAX_TIME_MICROS`) is a sender's bug
/// (seconds sent as milliseconds, a float overflow) and would poison every
/// trigger doing time arithmetic on it, so it is refused, never clamped.
pub const MAX_TIME_MICROS: i64 = 7_258_118_400_000_000;

/// Parses an event time: epoch milliseconds (integer or decimal), RFC 3339,
/// or a date-time or date without zone (taken as UTC). Returns microseconds since
/// the epoch, within [`MIN_TIME_MICROS`, `MAX_TIME_MICROS`).
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let micros = parse_any_time(text)?;
    check_time_range(micros).map_err(|e| format!("{text:?} {e}"))
}

/// Refuses a time outside [1970-01-01, 2200-01-01).
pub fn check_time_range(micros: i64) -> Result<i64, String> {
    if (MIN_TIME_MICROS..MAX_TIME_MICROS).contains(&micros) {
        Ok(micros)
    } else {
        Err(out_of_range())
    }
}

fn out_of_range() -> String {
    "is outside the accepted range 1970-01-01 to 2200-01-01".into()
}

fn parse_any_time(text: &str) -> Result<i64, String> {
    if let Ok(millis) = text.parse::<i64>() {
        return millis
            .checked_mul(1000)
            .ok_or_else(|| format!("{text:?} {}", out_of_range()));
    }
    if let Ok(millis) = text.parse::<f64>() {
        return float_millis(millis).ok_or_else(|| format!("{text:?} {}", out_of_range()));
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
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(NaiveTime::MIN).and_utc().timestamp_micros());
    }
    Err(format!(
        "{text:?} is not a time (epoch milliseconds or RFC 3339 like 2026-01-31T12:00:00Z)"
    ))
}

/// Decimal epoch milliseconds as microseconds, range-checked before the
/// cast (a cast saturates: 1e300 would become i64::MAX).
fn float_millis(millis: f64) -> Option<i64> {
    let micros = millis * 1000.0;
    let range = MIN_TIME_MICROS as f64..MAX_TIME_MICROS as f64;
    (micros.is_finite() && range.contains(&micros)).then_some(micros as i64)
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
        assert_eq!(parse_time("1524776691259.5"), Ok(1_524_776_691_259_500));
        assert_eq!(parse_time("2018-04-26"), Ok(1_524_700_800_000_000));
    }

    #[test]
    fn times_outside_1970_to_2200_are_refused_in_every_shape() {
        for text in [
            "1e300",
            "-1e300",
            "NaN",
            "inf",
            "-1",
            "9223372036854775807",
            "7258118400000",
            "7258118400000.0",
            "2200-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "1969-12-31 23:59:59",
            "+275760-09-13T00:00:00Z",
        ] {
            let err = parse_time(text).expect_err(text);
            assert!(
                err.contains("1970-01-01 to 2200-01-01") || err.contains("not a time"),
                "{text}: {err}"
            );
        }
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("7258118399999"), Ok(MAX_TIME_MICROS - 1000));
        assert_eq!(
            parse_time("2199-12-31T23:59:59.999999Z"),
            Ok(MAX_TIME_MICROS - 1)
        );
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
