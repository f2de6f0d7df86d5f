//! What a planned delivery does, as the flow planner rendered it into the
//! ledger's `payload` column (never holding a secret: the signature is made
//! at send time).

use serde::Deserialize;

use crate::flow::rate::RateLimit;

/// The webhook timeout when the payload does not give one.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// One delivery's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// POST `body` (sent byte for byte, and signed) to `url`, paced by
    /// the action's `rate_limit` when it has one.
    Webhook {
        url: String,
        body: String,
        timeout_ms: u64,
        rate_limit: Option<RateLimit>,
    },
    /// Append `line` (one NDJSON line, no newline) to the file at `path`.
    File { path: String, line: String },
    /// Store `event` (JSON text in the name/payload shape) in the workspace's events.
    Event { event: String },
}

/// The payload as stored (an internally tagged enum cannot hold raw JSON).
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum Stored {
    Webhook {
        url: String,
        body: String,
        #[serde(default = "default_timeout")]
        timeout_ms: u64,
        rate_limit: Option<String>,
    },
    File {
        path: String,
        line: String,
    },
    Event {
        event: serde_json::Value,
    },
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

impl Payload {
    /// Reads a ledger `payload`; the error says why it cannot be delivered.
    pub fn parse(text: Option<&str>) -> Result<Payload, String> {
        let text = text.ok_or("the planned delivery has no payload")?;
        let stored: Stored =
            serde_json::from_str(text).map_err(|e| format!("unreadable payload: {e}"))?;
        Ok(match stored {
            Stored::Webhook {
                url,
                body,
                timeout_ms,
                rate_limit,
            } => Payload::Webhook {
                url,
                body,
                timeout_ms,
                rate_limit: rate_limit
                    .map(|r| RateLimit::parse(&r))
                    .transpose()
                    .map_err(|e| format!("unreadable payload: rate_limit: {e}"))?,
            },
            Stored::File { path, line } => Payload::File { path, line },
            Stored::Event { event } => Payload::Event {
                event: event.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_kinds_parse() {
        let webhook =
            Payload::parse(Some(r#"{"kind":"webhook","url":"http://h/x","body":"{}"}"#)).unwrap();
        assert!(matches!(
            webhook,
            Payload::Webhook {
                timeout_ms: DEFAULT_TIMEOUT_MS,
                ..
            }
        ));
        let paced = Payload::parse(Some(
            r#"{"kind":"webhook","url":"http://h/x","body":"{}","rate_limit":"20/s"}"#,
        ));
        let Ok(Payload::Webhook { rate_limit, .. }) = paced else {
            panic!("a webhook: {paced:?}")
        };
        assert_eq!(rate_limit.map(|r| r.to_string()).as_deref(), Some("20/s"));
        let bad_rate = r#"{"kind":"webhook","url":"http://h/x","body":"{}","rate_limit":"fast"}"#;
        assert!(
            Payload::parse(Some(bad_rate))
                .unwrap_err()
                .contains("rate_limit")
        );
        let file = Payload::parse(Some(r#"{"kind":"file","path":"/tmp/a","line":"{}"}"#));
        assert!(matches!(file, Ok(Payload::File { .. })));
        let event = Payload::parse(Some(r#"{"kind":"event","event":{"name":"x"}}"#)).unwrap();
        let Payload::Event { event } = event else {
            panic!("an event")
        };
        assert_eq!(event, r#"{"name":"x"}"#);
        assert!(Payload::parse(None).is_err());
        assert!(Payload::parse(Some(r#"{"kind":"fax"}"#)).is_err());
    }
}
