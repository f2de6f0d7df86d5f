//! Flow files (docs/reference.md "Flows"): `flows/NAME.toml`, what happens to one trigger's
//! matches: segment filters, a frequency cap, an experiment split, ordered
//! branches and the actions they take.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::rate::RateLimit;
use super::template::BodyTemplate;
use crate::duration::parse_duration;
use crate::project::{FileError, confined_path};

/// How long a webhook may take unless its action says otherwise.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// One parsed, self-consistent flow file.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The file stem.
    pub name: String,
    pub path: PathBuf,
    pub trigger: String,
    pub active: bool,
    pub exclude_segments: Vec<String>,
    pub include_segments: Vec<String>,
    pub frequency_cap: Option<FrequencyCap>,
    pub experiment: Option<Experiment>,
    pub branches: Vec<Branch>,
    pub actions: BTreeMap<String, Action>,
    /// A run planning more deliveries than this holds them all (`held`)
    /// for an operator to release or discard: a blast-radius guardrail.
    pub max_deliveries_per_run: u64,
}

/// The default `max_deliveries_per_run`.
pub const MAX_DELIVERIES_PER_RUN: u64 = 10_000;

/// At most `max` fires per contact within `per`, across runs.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyCap {
    pub max: u32,
    pub per: Duration,
}

/// A deterministic split by contact: `holdout` percent get nothing (and are
/// recorded), the rest are spread over the variants by weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub holdout: u32,
    /// (name, weight), in name order.
    pub variants: Vec<(String, u32)>,
}

/// A branch: taken when `when` (SQL over the match's columns) is true; no
/// `when` is the else branch. The first branch that matches wins.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    pub when: Option<String>,
    pub actions: Vec<String>,
}

/// What a flow does for a contact.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Webhook {
        url: String,
        /// A compiled body template; `None` sends the default body (docs/reference.md "Deliveries").
        body: Option<BodyTemplate>,
        timeout: Duration,
        /// At most this many requests per second, minute or hour (`deliver::pace`).
        rate_limit: Option<RateLimit>,
    },
    /// Appends the delivery as one NDJSON line to `path`, relative to the
    /// project folder and inside it.
    File { path: PathBuf },
    /// Emits a new event into the workspace, for another trigger to hear.
    Event { name: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    trigger: String,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    exclude_segments: Vec<String>,
    #[serde(default)]
    include_segments: Vec<String>,
    frequency_cap: Option<RawCap>,
    experiment: Option<RawExperiment>,
    #[serde(default)]
    branch: Vec<RawBranch>,
    #[serde(default)]
    actions: BTreeMap<String, RawAction>,
    #[serde(default = "max_deliveries_per_run")]
    max_deliveries_per_run: u64,
}

fn yes() -> bool {
    true
}

fn max_deliveries_per_run() -> u64 {
    MAX_DELIVERIES_PER_RUN
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    max: u32,
    per: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    #[serde(default)]
    holdout: u32,
    #[serde(default)]
    variants: BTreeMap<String, u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBranch {
    when: Option<String>,
    actions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
enum RawAction {
    Webhook {
        url: String,
        body: Option<String>,
        timeout: Option<String>,
        rate_limit: Option<String>,
    },
    File {
        path: String,
    },
    Event {
        name: String,
    },
}

impl Flow {
    /// Parses the text of `path`. File-action paths stay relative to the
    /// project folder (the delivery worker joins them to it).
    pub fn parse(path: &Path, text: &str) -> Result<Flow, FileError> {
        let error = |line: usize, reason: String| FileError {
            path: path.display().to_string(),
            line,
            reason,
        };
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| error(1, "the file name is not UTF-8".into()))?
            .to_string();
        let raw: RawFlow = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |span| {
                text[..span.start.min(text.len())].matches('\n').count() + 1
            });
            error(line, e.message().to_string())
        })?;
        let at = |key: &str| line_of(text, key);
        let flow = Flow {
            name,
            path: path.to_path_buf(),
            trigger: raw.trigger,
            active: raw.active,
            exclude_segments: raw.exclude_segments,
            include_segments: raw.include_segments,
            frequency_cap: raw
                .frequency_cap
                .map(|c| cap(c).map_err(|m| error(at("frequency_cap"), m)))
                .transpose()?,
            experiment: raw
                .experiment
                .map(|e| experiment(e).map_err(|m| error(at("[experiment]"), m)))
                .transpose()?,
            branches: raw
                .branch
                .into_iter()
                .map(|b| Branch {
                    when: b.when.filter(|w| !w.trim().is_empty()),
                    actions: b.actions,
                })
                .collect(),
            actions: raw
                .actions
                .into_iter()
                .map(|(name, a)| {
                    let line = at(&format!("[actions.{name}]"));
                    action(a)
                        .map(|a| (name.clone(), a))
                        .map_err(|m| error(line, format!("actions.{name}: {m}")))
                })
                .collect::<Result<_, _>>()?,
            max_deliveries_per_run: raw.max_deliveries_per_run,
        };
        flow.check_shape(text).map_err(|(line, m)| error(line, m))?;
        Ok(flow)
    }

    /// The rules a flow file keeps by itself (names across files are
    /// checked by `check`).
    fn check_shape(&self, text: &str) -> Result<(), (usize, String)> {
        if self.branches.is_empty() {
            return Err((
                1,
                "a flow needs at least one [[branch]] with actions".into(),
            ));
        }
        if self.max_deliveries_per_run == 0 {
            return Err((
                line_of(text, "max_deliveries_per_run"),
                "max_deliveries_per_run must be at least 1".into(),
            ));
        }
        let else_branches = self.branches.iter().filter(|b| b.when.is_none()).count();
        let last_is_else = self.branches.last().is_some_and(|b| b.when.is_none());
        if else_branches > 1 || (else_branches == 1 && !last_is_else) {
            return Err((
                line_of(text, "[[branch]]"),
                "only the last [[branch]] may leave out `when` (it is the else branch)".into(),
            ));
        }
        for (i, branch) in self.branches.iter().enumerate() {
            for name in &branch.actions {
                if !self.actions.contains_key(name) {
                    let known: Vec<&str> = self.actions.keys().map(String::as_str).collect();
                    return Err((
                        line_of(text, &format!("\"{name}\"")),
                        format!(
                            "branch {i} names action {name:?}, which is not defined (defined: {})",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn cap(raw: RawCap) -> Result<FrequencyCap, String> {
    if raw.max == 0 {
        return Err("frequency_cap.max must be at least 1".into());
    }
    let per = parse_duration(&raw.per).map_err(|e| format!("frequency_cap.per: {e}"))?;
    Ok(FrequencyCap { max: raw.max, per })
}

fn experiment(raw: RawExperiment) -> Result<Experiment, String> {
    if raw.holdout > 100 {
        return Err(format!(
            "experiment.holdout is a percent: {} is over 100",
            raw.holdout
        ));
    }
    let total: u64 = raw.variants.values().map(|w| u64::from(*w)).sum();
    if !raw.variants.is_empty() && total == 0 {
        return Err("experiment.variants: the weights add up to 0".into());
    }
    Ok(Experiment {
        holdout: raw.holdout,
        variants: raw.variants.into_iter().collect(),
    })
}

fn action(raw: RawAction) -> Result<Action, String> {
    Ok(match raw {
        RawAction::Webhook {
            url,
            body,
            timeout,
            rate_limit,
        } => {
            let parsed = url::Url::parse(&url).map_err(|e| format!("url {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("url {url:?}: use http:// or https://"));
            }
            let body = body.as_deref().map(BodyTemplate::compile).transpose()?;
            let timeout = timeout
                .map(|t| parse_duration(&t).map_err(|e| format!("timeout: {e}")))
                .transpose()?
                .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT);
            let rate_limit = rate_limit
                .map(|r| RateLimit::parse(&r).map_err(|e| format!("rate_limit: {e}")))
                .transpose()?;
            Action::Webhook {
                url,
                body,
                timeout,
                rate_limit,
            }
        }
        RawAction::File { path } => Action::File {
            path: confined_path(&path).map_err(|e| format!("path: {e}"))?,
        },
        RawAction::Event { name } if name.trim().is_empty() => {
            return Err("an event action needs a name".into());
        }
        RawAction::Event { name } => Action::Event { name },
    })
}

/// The first line that contains `needle` (1 when none does).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"
trigger = "cart_abandoned"
active = true
exclude_segments = ["unsubscribed"]
include_segments = []
frequency_cap = { max = 1, per = "24h" }
[experiment]
holdout = 10
variants = { a = 50, b = 50 }
[[branch]]
when = "cart_value > 100"
actions = ["vip_hook"]
[[branch]]
actions = ["hook"]
[actions.hook]
type = "webhook"
url = "http://127.0.0.1:9000/hook"
[actions.vip_hook]
type = "webhook"
url = "http://127.0.0.1:9000/vip"
rate_limit = "50/s"
body = '{"email": {{ contact.email }}, "value": {{ data.cart_value }}}'
[actions.audit]
type = "file"
path = "deliveries/reengage.ndjson"
[actions.chain]
type = "event"
name = "vip_abandoned"
"#;

    fn parse(text: &str) -> Result<Flow, FileError> {
        Flow::parse(Path::new("flows/reengage.toml"), text)
    }

    #[test]
    fn the_spec_example() {
        let flow = parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(flow.name, "reengage");
        assert_eq!(flow.trigger, "cart_abandoned");
        assert_eq!(
            flow.frequency_cap,
            Some(FrequencyCap {
                max: 1,
                per: Duration::from_secs(86_400)
            })
        );
        let experiment = flow.experiment.unwrap();
        assert_eq!(experiment.holdout, 10);
        assert_eq!(experiment.variants, [("a".into(), 50), ("b".into(), 50)]);
        assert_eq!(flow.branches[0].when.as_deref(), Some("cart_value > 100"));
        assert_eq!(flow.branches[1].when, None);
        assert_eq!(
            flow.actions["audit"],
            Action::File {
                path: PathBuf::from("deliveries/reengage.ndjson")
            }
        );
        assert!(matches!(
            flow.actions["vip_hook"],
            Action::Webhook { body: Some(_), .. }
        ));
        let Action::Webhook { rate_limit, .. } = &flow.actions["vip_hook"] else {
            panic!("a webhook")
        };
        assert_eq!(rate_limit.map(|r| r.to_string()).as_deref(), Some("50/s"));
        assert!(matches!(
            flow.actions["hook"],
            Action::Webhook {
                rate_limit: None,
                ..
            }
        ));
    }

    #[test]
    fn a_bad_rate_limit_names_the_action_the_key_and_the_line() {
        let text = SPEC_EXAMPLE.replace(r#"rate_limit = "50/s""#, r#"rate_limit = "50/day""#);
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 18, "the action's line: {e}");
        assert!(
            e.reason.starts_with("actions.vip_hook: rate_limit: ") && e.reason.contains("day"),
            "{e}"
        );
        let on_a_file = SPEC_EXAMPLE.replace(
            "path = \"deliveries/reengage.ndjson\"",
            "path = \"deliveries/reengage.ndjson\"\nrate_limit = \"5/s\"",
        );
        let e = parse(&on_a_file).unwrap_err();
        assert!(e.reason.contains("rate_limit"), "{e}");
    }

    #[test]
    fn mistakes_name_the_line_and_the_reason() {
        let typo = SPEC_EXAMPLE.replace("holdout = 10", "holdot = 10");
        let e = parse(&typo).unwrap_err();
        assert!(e.reason.contains("holdot"), "{e}");
        assert_eq!(e.line, 8);
        let undefined = SPEC_EXAMPLE.replace(r#"actions = ["hook"]"#, r#"actions = ["hookk"]"#);
        let e = parse(&undefined).unwrap_err();
        assert!(e.reason.contains("\"hookk\""), "{e}");
        assert_eq!(e.line, 14);
        let weights = SPEC_EXAMPLE.replace("holdout = 10", "holdout = 120");
        assert!(parse(&weights).unwrap_err().reason.contains("over 100"));
        let zero = SPEC_EXAMPLE.replace("{ a = 50, b = 50 }", "{ a = 0 }");
        assert!(parse(&zero).unwrap_err().reason.contains("add up to 0"));
        let template = SPEC_EXAMPLE.replace("{{ data.cart_value }}", "{{ data.cart_value ");
        let e = parse(&template).unwrap_err();
        assert!(e.reason.contains("actions.vip_hook: body template"), "{e}");
        let kind = SPEC_EXAMPLE.replace(r#"type = "file""#, r#"type = "fax""#);
        assert!(parse(&kind).unwrap_err().reason.contains("fax"));
    }

    #[test]
    fn file_paths_that_leave_the_project_are_refused_with_their_line() {
        for path in ["/tmp/audit.ndjson", "../audit.ndjson", "deliveries/../../x"] {
            let text = SPEC_EXAMPLE.replace("deliveries/reengage.ndjson", path);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, 23, "{path}: {e}");
            assert!(e.reason.starts_with("actions.audit: path: "), "{path}: {e}");
        }
    }
}
