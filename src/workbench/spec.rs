//! Trigger test files (docs/reference.md "Trigger tests"):
//! `queries/tests/TRIGGER.toml`, one `[[case]]` per case: events (inline,
//! and/or an NDJSON file), an optional clock and static segments, and the
//! matches expected, each with the decision of every flow named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::project::{FileError, file_name, load_files};

/// Folder of trigger test files inside a project.
pub const TEST_DIR: &str = "queries/tests";

/// One test file: the cases of one trigger.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// The trigger tested: the file stem.
    pub trigger: String,
    pub path: PathBuf,
    pub cases: Vec<Case>,
}

/// One case: given these events, expect these matches.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// The run's clock; by default a minute after the latest event.
    pub now: Option<DateTime<Utc>>,
    /// Events as JSON objects, in any shape `tripwire import` reads.
    pub events: Vec<Value>,
    /// Static segments: name → members (an `@` makes a member an email,
    /// else a user id).
    pub segments: BTreeMap<String, Vec<String>>,
    /// The matches expected; no other match may happen.
    pub expect: Vec<Expected>,
    /// Rows expected to wait for an identity.
    pub waiting: Option<u64>,
}

/// One expected match.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub contact: String,
    /// Expected only when given.
    pub event_id: Option<String>,
    /// Columns of the match's data: each given one must equal.
    pub data: serde_json::Map<String, Value>,
    /// Per flow: the decision, each given field must equal.
    pub flows: BTreeMap<String, ExpectedDecision>,
}

/// What a flow is expected to do with a match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectedDecision {
    /// `pending`, `held_out`, `filtered` or `held`.
    pub status: Option<String>,
    /// Text the reason must contain.
    pub reason: Option<String>,
    pub variant: Option<String>,
    pub branch: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    case: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    now: Option<String>,
    #[serde(default)]
    events: Vec<toml::Value>,
    events_file: Option<String>,
    #[serde(default)]
    segments: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    expect: Vec<RawExpected>,
    waiting: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpected {
    contact: String,
    event_id: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, toml::Value>,
    #[serde(default)]
    flows: BTreeMap<String, RawDecision>,
}

/// A decision as written: a status alone, or a table of fields.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDecision {
    Status(String),
    Fields(RawDecisionFields),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecisionFields {
    status: Option<String>,
    reason: Option<String>,
    variant: Option<String>,
    branch: Option<i64>,
}

/// Every test file of the project (none when the folder does not exist).
pub fn load_tests(project_dir: &Path) -> (Vec<TestFile>, Vec<FileError>) {
    let dir = project_dir.join(TEST_DIR);
    load_files(&dir, "toml", |path, text| TestFile::parse(path, text, &dir))
}

impl TestFile {
    /// Parses the text of `path`; `events_file`s resolve against `dir`.
    pub fn parse(path: &Path, text: &str, dir: &Path) -> Result<TestFile, FileError> {
        let error = |line: usize, reason: String| FileError {
            path: path.display().to_string(),
            line,
            reason,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |span| {
                text[..span.start.min(text.len())].matches('\n').count() + 1
            });
            error(line, e.message().to_string())
        })?;
        if raw.case.is_empty() {
            return Err(error(1, "a test file needs at least one [[case]]".into()));
        }
        let cases = raw
            .case
            .into_iter()
            .map(|c| {
                let line = line_of(text, &c.name);
                case(c, dir).map_err(|reason| error(line, reason))
            })
            .collect::<Result<_, _>>()?;
        Ok(TestFile {
            trigger: file_name(path)?,
            path: path.to_path_buf(),
            cases,
        })
    }
}

fn case(raw: RawCase, dir: &Path) -> Result<Case, String> {
    let named = |m: String| format!("case {:?}: {m}", raw.name);
    let now = raw
        .now
        .as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.to_utc())
                .map_err(|e| named(format!("now: {t:?} is not an RFC 3339 time: {e}")))
        })
        .transpose()?;
    let mut events: Vec<Value> = raw.events.into_iter().map(json_of).collect();
    if let Some(file) = &raw.events_file {
        events.extend(read_events(&dir.join(file)).map_err(named)?);
    }
    if events.is_empty() {
        return Err(named(
            "give events (inline `events`, or `events_file`)".into(),
        ));
    }
    let expect = raw
        .expect
        .into_iter()
        .map(|e| Expected {
            contact: e.contact,
            event_id: e.event_id,
            data: e.data.into_iter().map(|(k, v)| (k, json_of(v))).collect(),
            flows: e
                .flows
                .into_iter()
                .map(|(flow, d)| (flow, decision(d)))
                .collect(),
        })
        .collect();
    Ok(Case {
        name: raw.name,
        now,
        events,
        segments: raw.segments,
        expect,
        waiting: raw.waiting,
    })
}

fn decision(raw: RawDecision) -> ExpectedDecision {
    match raw {
        RawDecision::Status(status) => ExpectedDecision {
            status: Some(status),
            ..ExpectedDecision::default()
        },
        RawDecision::Fields(f) => ExpectedDecision {
            status: f.status,
            reason: f.reason,
            variant: f.variant,
            branch: f.branch,
        },
    }
}

/// An NDJSON file's events.
fn read_events(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// A TOML value as JSON (dates become RFC 3339 text).
fn json_of(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(json_of).collect()),
        toml::Value::Table(table) => {
            Value::Object(table.into_iter().map(|(k, v)| (k, json_of(v))).collect())
        }
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TestFile, FileError> {
        TestFile::parse(Path::new("queries/tests/carts.toml"), text, Path::new("."))
    }

    #[test]
    fn a_case_has_events_and_expected_matches_with_flow_decisions() {
        let file = parse(
            r#"
[[case]]
name = "a big cart"
now = "2026-11-05T00:00:00Z"
events = [{ name = "cart", payload = { v = 150.5 }, email = "a@x.com" }]
segments = { vip = ["a@x.com", "u7"] }

[[case.expect]]
contact = "email:a@x.com"
data = { v = 150.5 }
flows = { reengage = "pending", audit = { status = "filtered", reason = "cap" } }
"#,
        )
        .unwrap();
        assert_eq!(file.trigger, "carts");
        let case = &file.cases[0];
        assert_eq!(case.events[0]["payload"]["v"], 150.5);
        assert_eq!(case.segments["vip"], ["a@x.com", "u7"]);
        let expected = &case.expect[0];
        assert_eq!(expected.data["v"], 150.5);
        assert_eq!(
            expected.flows["reengage"].status.as_deref(),
            Some("pending")
        );
        assert_eq!(expected.flows["audit"].reason.as_deref(), Some("cap"));
    }

    #[test]
    fn mistakes_name_the_line() {
        let err =
            parse("[[case]]\nname = \"x\"\nevents = [{ name = \"a\" }]\nwhen = 1\n").unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        let err = parse("[[case]]\nname = \"empty\"\n").unwrap_err();
        assert!(err.reason.contains("give events"), "{err}");
        let err =
            parse("[[case]]\nname = \"t\"\nnow = \"soon\"\nevents = [{ a = 1 }]\n").unwrap_err();
        assert!(err.reason.contains("now"), "{err}");
        assert!(parse("").unwrap_err().reason.contains("[[case]]"));
    }
}
