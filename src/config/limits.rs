//! The bounds of `tripwire.toml`: `[server]` (connection timeouts and the
//! connection cap) and the top-level limits on what the public and analysts
//! can make tripwire hold (docs/reference.md "Limits"). Every bound that
//! input from outside can push against is one of these keys.

use std::time::Duration;

use serde::Deserialize;

use crate::duration::parse_duration;

/// `[server]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    header_timeout: String,
    request_timeout: String,
    idle_timeout: String,
    max_connections: usize,
}

impl Default for RawServer {
    fn default() -> RawServer {
        RawServer {
            header_timeout: "10s".into(),
            request_timeout: "30s".into(),
            idle_timeout: "60s".into(),
            max_connections: 1024,
        }
    }
}

/// How `tripwire serve` treats connections (`[server]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// A request's head (request line and headers) must arrive within this
    /// long of its first byte; a slower client is disconnected.
    pub header_timeout: Duration,
    /// Reading a request's body and answering it must take no longer.
    pub request_timeout: Duration,
    /// A connection with no request under way is closed after this long.
    pub idle_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog. Lowered at
    /// start to fit the descriptor limit.
    pub max_connections: usize,
}

impl RawServer {
    pub(super) fn validate(self) -> Result<Server, String> {
        let duration = |key: &str, text: &str| positive_duration(&format!("server.{key}"), text);
        if self.max_connections == 0 {
            return Err("server.max_connections: must be more than 0".into());
        }
        Ok(Server {
            header_timeout: duration("header_timeout", &self.header_timeout)?,
            request_timeout: duration("request_timeout", &self.request_timeout)?,
            idle_timeout: duration("idle_timeout", &self.idle_timeout)?,
            max_connections: self.max_connections,
        })
    }
}

/// The top-level limit keys as written (read with the rest of the top level).
pub(super) struct RawLimits {
    pub(super) query_timeout: Option<String>,
    pub(super) query_memory: Option<usize>,
    pub(super) max_learned_names: Option<usize>,
    pub(super) max_learned_fields: Option<usize>,
    pub(super) max_line_bytes: Option<usize>,
    pub(super) max_events_per_second: Option<u32>,
}

/// Default of `query_timeout`.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of `query_memory`: 4 GiB.
const QUERY_MEMORY: usize = 4 << 30;
/// Default of `max_learned_names`.
const LEARNED_NAMES: usize = 1000;
/// Default of `max_learned_fields`.
const LEARNED_FIELDS: usize = 200;
/// Default of `max_line_bytes`: 64 MiB.
const LINE_BYTES: usize = 64 << 20;
/// The largest `max_line_bytes` accepted: 1 GiB.
const MAX_LINE_BYTES: usize = 1 << 30;

/// Bounds on analyst SQL, learning, import lines and ingest rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// An analyst's query (`tripwire query`, previews, the API) that runs
    /// longer is stopped with an error naming this key.
    pub query_timeout: Duration,
    /// Memory all queries of the process may hold before they spill or fail.
    pub query_memory: usize,
    /// Event names learned per workspace; new names beyond are counted only.
    pub max_learned_names: usize,
    /// Field paths learned per event name; new fields beyond are not kept.
    pub max_learned_fields: usize,
    /// The longest NDJSON line `tripwire import` reads; a longer one is
    /// refused with its file and line.
    pub max_line_bytes: usize,
    /// Events per second each write key (workspace) may send; `None` for no
    /// limit. Over it, requests are answered 429 with `Retry-After`.
    pub max_events_per_second: Option<u32>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            query_timeout: QUERY_TIMEOUT,
            query_memory: QUERY_MEMORY,
            max_learned_names: LEARNED_NAMES,
            max_learned_fields: LEARNED_FIELDS,
            max_line_bytes: LINE_BYTES,
            max_events_per_second: None,
        }
    }
}

impl RawLimits {
    pub(super) fn validate(self) -> Result<Limits, String> {
        let defaults = Limits::default();
        let at_least_one = |key: &str, n: Option<usize>, default: usize| match n {
            Some(0) => Err(format!("{key}: must be more than 0")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let max_line_bytes = at_least_one(
            "max_line_bytes",
            self.max_line_bytes,
            defaults.max_line_bytes,
        )?;
        if max_line_bytes > MAX_LINE_BYTES {
            return Err(format!(
                "max_line_bytes: {max_line_bytes} is over the largest accepted, {MAX_LINE_BYTES}"
            ));
        }
        Ok(Limits {
            query_timeout: match self.query_timeout {
                Some(text) => positive_duration("query_timeout", &text)?,
                None => defaults.query_timeout,
            },
            query_memory: at_least_one("query_memory", self.query_memory, defaults.query_memory)?,
            max_learned_names: at_least_one(
                "max_learned_names",
                self.max_learned_names,
                defaults.max_learned_names,
            )?,
            max_learned_fields: at_least_one(
                "max_learned_fields",
                self.max_learned_fields,
                defaults.max_learned_fields,
            )?,
            max_line_bytes,
            max_events_per_second: match self.max_events_per_second {
                Some(0) => return Err("max_events_per_second: must be more than 0".into()),
                other => other,
            },
        })
    }
}

fn positive_duration(key: &str, text: &str) -> Result<Duration, String> {
    match parse_duration(text).map_err(|m| format!("{key}: {m}"))? {
        d if d.is_zero() => Err(format!("{key}: must be longer than 0")),
        d => Ok(d),
    }
}
