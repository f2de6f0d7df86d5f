//! The three JSON shapes an event arrives in (docs/reference.md "Ingest API"), mapped to one
//! [`ParsedEvent`]:
//! - the Simon-style collect envelope (`partnerId`, `clientId`, `properties.eventName`…),
//! - Segment's spec (`type`, `event`, `anonymousId`, `userId`…), as sent to the
//!   tracking API and as found in Segment's S3 archives,
//! - the Paragon/Alloy shape (`name`, `payload`).

use std::borrow::Cow;

use super::fields::Fields;
use super::scan::MAX_JSON_DEPTH;
use super::{EventKind, ParsedEvent, parse_time};

/// Which shape a JSON object is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Collect,
    Segment,
    NamePayload,
}

impl Shape {
    /// A collect envelope carries `partnerId`; the name/payload shape has
    /// `name` and `payload` (whatever else it has, `type` included), or
    /// `name` without `type` or `event`; anything else is read as Segment's
    /// spec.
    pub fn detect(fields: &Fields) -> Shape {
        let name_payload = fields.has("name")
            && (fields.has("payload") || (!fields.has("type") && !fields.has("event")));
        if fields.has("partnerId") {
            Shape::Collect
        } else if name_payload {
            Shape::NamePayload
        } else {
            Shape::Segment
        }
    }
}

/// Parses one JSON object in any shape and validates it.
pub fn parse_event(text: &str) -> Result<ParsedEvent<'_>, String> {
    event_from_fields(&Fields::read(text, MAX_JSON_DEPTH)?)
}

/// [`parse_event`] of an object already read into its fields (by
/// [`Fields::read`]), so a caller that needed the fields itself reads the
/// JSON once.
pub fn event_from_fields<'a>(fields: &Fields<'a>) -> Result<ParsedEvent<'a>, String> {
    let event = match Shape::detect(fields) {
        Shape::Collect => from_collect(fields)?,
        Shape::Segment => from_segment(fields)?,
        Shape::NamePayload => from_name_payload(fields)?,
    };
    event.validate()
}

/// Fields of the collect envelope that become columns (or are secrets).
const COLLECT_MAPPED: &[&str] = &[
    "partnerId",
    "partnerSecret",
    "clientId",
    "sentAt",
    "type",
    "properties",
    "traits",
    "messageId",
];

fn from_collect<'a>(f: &Fields<'a>) -> Result<ParsedEvent<'a>, String> {
    let kind = EventKind::parse(&f.str("type")?.ok_or("type is required")?)?;
    let mut event = ParsedEvent::new(kind);
    event.workspace = f.str("partnerId")?;
    event.secret = f.str("partnerSecret")?;
    event.client_id = f.str("clientId")?;
    event.event_id = f.str("messageId")?;
    event.sent_at = time_field(f, "sentAt")?;
    if let Some(inner) = f.inner("properties")? {
        event.event_name = inner
            .str("eventName")
            .map_err(|e| format!("properties.{e}"))?;
        event.requires_identity = inner
            .bool("requiresIdentity")
            .map_err(|e| format!("properties.{e}"))?;
        event.properties = match inner.object("properties") {
            Ok(Some(nested)) => Some(Cow::Borrowed(nested)),
            Ok(None) => inner
                .rest(&["eventName", "requiresIdentity", "properties"])
                .map(Cow::Owned),
            Err(e) => return Err(format!("properties.{e}")),
        };
    }
    if kind == EventKind::Track && event.event_name.is_none() {
        // A predefined event type (`event` other than "custom") names itself.
        event.event_name = f.str("event")?.filter(|e| e != "custom");
        if event.event_name.is_none() {
            return Err("properties.eventName is required for a custom event".into());
        }
    }
    read_traits(f, &mut event)?;
    event.envelope = f.rest(COLLECT_MAPPED).map(Cow::Owned);
    Ok(event)
}

/// Fields of Segment's spec that become columns (`writeKey` is a secret).
const SEGMENT_MAPPED: &[&str] = &[
    "type",
    "event",
    "properties",
    "userId",
    "anonymousId",
    "traits",
    "messageId",
    "timestamp",
    "writeKey",
];

fn from_segment<'a>(f: &Fields<'a>) -> Result<ParsedEvent<'a>, String> {
    let kind = EventKind::parse(&f.str("type")?.ok_or("type is required")?)?;
    let mut event = ParsedEvent::new(kind);
    event.event_name = f.str("event")?;
    event.client_id = f.str("anonymousId")?;
    event.user_id = f.str("userId")?;
    event.event_id = f.str("messageId")?;
    event.properties = f.object("properties")?.map(Cow::Borrowed);
    // Segment's event time is `timestamp`; archives also carry the others.
    event.sent_at = match time_field(f, "timestamp")? {
        Some(t) => Some(t),
        None => match time_field(f, "originalTimestamp")? {
            Some(t) => Some(t),
            None => time_field(f, "sentAt")?,
        },
    };
    if let Some(traits) = f.object("traits")? {
        event.traits = Some(Cow::Borrowed(traits));
        event.email = Fields::of_checked(traits)?
            .str("email")
            .map_err(|e| format!("traits.{e}"))?;
    }
    if event.email.is_none() {
        event.email = context_email(f)?;
    }
    event.envelope = f.rest(SEGMENT_MAPPED).map(Cow::Owned);
    if kind == EventKind::Track && event.event_name.is_none() {
        return Err("event is required for a track call".into());
    }
    if event.client_id.is_none() && event.user_id.is_none() {
        return Err("either userId or anonymousId is required".into());
    }
    Ok(event)
}

/// `context.traits.email`, where Segment's browser library puts it on tracks.
fn context_email<'a>(f: &Fields<'a>) -> Result<Option<Cow<'a, str>>, String> {
    let Some(context) = f.object("context")? else {
        return Ok(None);
    };
    let context = Fields::of_checked(context)?;
    let Some(traits) = context
        .object("traits")
        .map_err(|e| format!("context.{e}"))?
    else {
        return Ok(None);
    };
    Fields::of_checked(traits)?
        .str("email")
        .map_err(|e| format!("context.traits.{e}"))
}

/// Fields of the name/payload shape that become columns.
const NAME_PAYLOAD_MAPPED: &[&str] = &[
    "type",
    "name",
    "payload",
    "client_id",
    "user_id",
    "email",
    "event_id",
    "timestamp",
];

fn from_name_payload<'a>(f: &Fields<'a>) -> Result<ParsedEvent<'a>, String> {
    if let Some(kind) = f.str("type")?
        && kind != "track"
    {
        return Err(format!(
            "type {kind:?}: an event with name and payload is a \"track\" event"
        ));
    }
    let mut event = ParsedEvent::new(EventKind::Track);
    event.event_name = f.str("name")?;
    event.properties = f.object("payload")?.map(Cow::Borrowed);
    event.client_id = f.str("client_id")?;
    event.user_id = f.str("user_id")?;
    event.email = f.str("email")?;
    event.event_id = f.str("event_id")?;
    event.sent_at = time_field(f, "timestamp")?;
    event.envelope = f.rest(NAME_PAYLOAD_MAPPED).map(Cow::Owned);
    Ok(event)
}

/// `traits.userId` and `traits.email` of the collect envelope.
fn read_traits<'a>(f: &Fields<'a>, event: &mut ParsedEvent<'a>) -> Result<(), String> {
    if let Some(traits) = f.object("traits")? {
        let inner = Fields::of_checked(traits)?;
        event.user_id = inner.str("userId").map_err(|e| format!("traits.{e}"))?;
        event.email = inner.str("email").map_err(|e| format!("traits.{e}"))?;
        event.traits = Some(Cow::Borrowed(traits));
    }
    Ok(())
}

fn time_field(f: &Fields, key: &str) -> Result<Option<i64>, String> {
    f.str(key)?
        .map(|t| parse_time(&t).map_err(|e| format!("{key}: {e}")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's example body, verbatim (seeds/004).
    const SEED: &str = r#"{
   "partnerId": "[ REPLACE ME ]",
   "clientId": "92adbc3c-c22b-49bf-a9ae-11d9e8b3e6b4",
   "context": {
       "debug": true
   },
   "partnerSecret": "[ REPLACE ME ]",
   "sentAt": 1524776691259,
   "type": "track",
   "properties": {
       "eventName": "some_event",
       "properties":{
           "someProperty": "Some value"
       }
   },
   "traits": {
       "userId": "97980cfea0067",
       "email": "[email protected]"
   },
   "event": "custom"
}"#;

    #[test]
    fn collect_envelope_verbatim() {
        let e = parse_event(SEED).unwrap();
        assert_eq!(e.workspace.as_deref(), Some("[ REPLACE ME ]"));
        assert_eq!(e.secret.as_deref(), Some("[ REPLACE ME ]"));
        assert_eq!(e.kind, EventKind::Track);
        assert_eq!(e.event_name.as_deref(), Some("some_event"));
        assert_eq!(
            e.client_id.as_deref(),
            Some("92adbc3c-c22b-49bf-a9ae-11d9e8b3e6b4")
        );
        assert_eq!(e.user_id.as_deref(), Some("97980cfea0067"));
        assert_eq!(e.email.as_deref(), Some("[email protected]"));
        assert_eq!(e.sent_at, Some(1_524_776_691_259_000));
        let props: serde_json::Value =
            serde_json::from_str(e.properties.as_deref().unwrap()).unwrap();
        assert_eq!(props["someProperty"], "Some value");
        let envelope = e.envelope.unwrap();
        assert!(envelope.contains("\"debug\": true") && envelope.contains("\"event\":\"custom\""));
        assert!(
            !envelope.contains("partnerSecret"),
            "secrets are never stored"
        );
    }

    #[test]
    fn collect_requires_identity_and_predefined_events() {
        let e = parse_event(
            r#"{"partnerId":"shop","clientId":"c1","type":"track","event":"page_view",
                "properties":{"requiresIdentity":false,"url":"/x"}}"#,
        )
        .unwrap();
        assert_eq!(e.event_name.as_deref(), Some("page_view"));
        assert_eq!(e.requires_identity, Some(false));
        assert_eq!(e.properties.as_deref(), Some(r#"{"url":"/x"}"#));
        let missing =
            parse_event(r#"{"partnerId":"shop","clientId":"c","type":"track","event":"custom"}"#);
        assert!(missing.unwrap_err().contains("eventName"));
    }

    #[test]
    fn segment_track_and_identify() {
        let t = parse_event(
            r#"{"type":"track","event":"Order Completed","anonymousId":"a1","userId":"u1",
                "properties":{"total":30.5},"messageId":"m-1","timestamp":"2024-01-02T03:04:05.000Z",
                "context":{"traits":{"email":"x@y.z"}},"integrations":{},"writeKey":"k"}"#,
        )
        .unwrap();
        assert_eq!(t.event_name.as_deref(), Some("Order Completed"));
        assert_eq!(t.event_id.as_deref(), Some("m-1"));
        assert_eq!(t.email.as_deref(), Some("x@y.z"));
        assert_eq!(t.sent_at, Some(1_704_164_645_000_000));
        let envelope = t.envelope.unwrap();
        assert!(envelope.contains("integrations") && !envelope.contains("writeKey"));
        let i = parse_event(
            r#"{"type":"identify","anonymousId":"a1","userId":"u1","traits":{"email":"x@y.z","plan":"pro"}}"#,
        )
        .unwrap();
        assert_eq!(i.kind, EventKind::Identify);
        assert_eq!(i.email.as_deref(), Some("x@y.z"));
        assert!(i.traits.unwrap().contains("pro"));
    }

    #[test]
    fn name_payload_shape() {
        let e = parse_event(
            r#"{"name":"Ticket Created","payload":{"ticketName":"A"},"user_id":"gregg"}"#,
        )
        .unwrap();
        assert_eq!(e.event_name.as_deref(), Some("Ticket Created"));
        assert_eq!(e.user_id.as_deref(), Some("gregg"));
        assert_eq!(e.properties.as_deref(), Some(r#"{"ticketName":"A"}"#));
    }

    #[test]
    fn name_and_payload_win_over_a_type_field() {
        let e =
            parse_event(r#"{"type": "track", "name": "x", "payload": {"a": 1}, "user_id": "u"}"#)
                .unwrap();
        assert_eq!(e.event_name.as_deref(), Some("x"));
        assert_eq!(e.properties.as_deref(), Some(r#"{"a": 1}"#));
        assert_eq!(e.envelope, None, "type is mapped, not kept");
        let err =
            parse_event(r#"{"type": "identify", "name": "x", "payload": {}, "user_id": "u"}"#)
                .unwrap_err();
        assert!(err.contains("\"track\""), "{err}");
        // A Segment call that happens to carry `name` is still a Segment call.
        let page =
            parse_event(r#"{"type": "track", "event": "e", "name": "n", "userId": "u"}"#).unwrap();
        assert_eq!(page.event_name.as_deref(), Some("e"));
    }

    #[test]
    fn a_lone_surrogate_anywhere_is_refused() {
        // Found by fuzz/event_shapes: kept raw, it made properties that no
        // JSON reader (learning, the JSON functions in triggers) could read.
        for line in [
            r#"{"name":"x","user_id":"u","payload":{"a":"\ud800"}}"#,
            r#"{"type":"track","event":"e","userId":"u","context":{"k":"\udfff"}}"#,
        ] {
            let err = parse_event(line).unwrap_err();
            assert!(err.contains("surrogate"), "{line}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_like_on_every_endpoint() {
        let deep = format!(
            r#"{{"name":"x","user_id":"u","payload":{{"a":{}1{}}}}}"#,
            "[".repeat(16_000),
            "]".repeat(16_000)
        );
        assert!(parse_event(&deep).unwrap_err().contains("deeper than 64"));
    }

    #[test]
    fn a_float_overflow_time_is_refused_with_its_field() {
        let err = parse_event(r#"{"partnerId":"s","type":"track","clientId":"c","sentAt":1e300,"properties":{"eventName":"e"}}"#)
            .unwrap_err();
        assert!(err.starts_with("sentAt: ") && err.contains("2200"), "{err}");
        let err = parse_event(
            r#"{"type":"track","event":"e","userId":"u","timestamp":"1969-07-20T20:17:00Z"}"#,
        )
        .unwrap_err();
        assert!(err.starts_with("timestamp: "), "{err}");
    }

    #[test]
    fn bad_events_say_why() {
        let cases = [
            (r#"{"type":"page","anonymousId":"a"}"#, "not supported"),
            (r#"{"type":"track","anonymousId":"a"}"#, "event is required"),
            (r#"{"type":"track","event":"x"}"#, "userId or anonymousId"),
            (
                r#"{"name":"x","payload":[1],"user_id":"u"}"#,
                "payload must be a JSON object",
            ),
            (
                r#"{"name":"x","user_id":"u","timestamp":"soon"}"#,
                "timestamp",
            ),
            (
                r#"{"partnerId":"s","type":"track","clientId":"c","sentAt":"x","properties":{"eventName":"e"}}"#,
                "sentAt",
            ),
        ];
        for (line, reason) in cases {
            let err = parse_event(line).unwrap_err();
            assert!(err.contains(reason), "{line}: {err}");
        }
    }
}
