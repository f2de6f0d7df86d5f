//! What a trigger test case expected against what its run did: a pure
//! comparison, each difference one readable line (`-` expected but not
//! there, `+` there but not expected, `~` there but different).

use std::collections::BTreeMap;

use serde_json::Value;

use super::spec::{Case, Expected, ExpectedDecision};

/// What a case's run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub matches: Vec<ObservedMatch>,
    /// Rows waiting for an identity.
    pub waiting: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedMatch {
    pub contact: String,
    pub event_id: Option<String>,
    /// The match's data (a JSON object).
    pub data: Value,
    /// Per flow listening: what it decided.
    pub flows: BTreeMap<String, ObservedDecision>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedDecision {
    pub status: String,
    pub reason: Option<String>,
    pub variant: Option<String>,
    pub branch: Option<i64>,
}

/// Every way `observed` differs from what `case` expects (none: it passes).
pub fn differences(case: &Case, observed: &Observed) -> Vec<String> {
    let mut lines = Vec::new();
    let mut unclaimed: Vec<&ObservedMatch> = observed.matches.iter().collect();
    for expected in &case.expect {
        let found = unclaimed.iter().position(|m| {
            m.contact == expected.contact
                && expected
                    .event_id
                    .as_ref()
                    .is_none_or(|id| m.event_id.as_ref() == Some(id))
        });
        match found {
            None => lines.push(format!("- a match for {}: none", describe(expected))),
            Some(at) => {
                let actual = unclaimed.remove(at);
                lines.extend(match_differences(expected, actual));
            }
        }
    }
    for extra in unclaimed {
        lines.push(format!(
            "+ an unexpected match for {}{} with data {}",
            extra.contact,
            extra
                .event_id
                .as_ref()
                .map(|id| format!(" (event {id})"))
                .unwrap_or_default(),
            extra.data
        ));
    }
    if let Some(waiting) = case.waiting
        && waiting != observed.waiting
    {
        lines.push(format!(
            "~ rows waiting for an identity: expected {waiting}, got {}",
            observed.waiting
        ));
    }
    lines
}

fn describe(expected: &Expected) -> String {
    match &expected.event_id {
        Some(id) => format!("{} (event {id})", expected.contact),
        None => expected.contact.clone(),
    }
}

fn match_differences(expected: &Expected, actual: &ObservedMatch) -> Vec<String> {
    let who = describe(expected);
    let mut lines = Vec::new();
    for (column, want) in &expected.data {
        let got = actual.data.get(column).unwrap_or(&Value::Null);
        if !same_value(want, got) {
            lines.push(format!(
                "~ {who}: data.{column}: expected {want}, got {got}"
            ));
        }
    }
    for (flow, want) in &expected.flows {
        match actual.flows.get(flow) {
            None => lines.push(format!(
                "~ {who}: flow {flow}: expected a decision, it made none"
            )),
            Some(got) => lines.extend(decision_differences(&who, flow, want, got)),
        }
    }
    lines
}

fn decision_differences(
    who: &str,
    flow: &str,
    want: &ExpectedDecision,
    got: &ObservedDecision,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut differ = |field: &str, want: String, got: String| {
        lines.push(format!(
            "~ {who}: flow {flow}: {field}: expected {want}, got {got}"
        ));
    };
    let reason = || got.reason.clone().unwrap_or_else(|| "none".into());
    if let Some(status) = &want.status
        && *status != got.status
    {
        differ(
            "status",
            status.clone(),
            format!("{} ({})", got.status, reason()),
        );
    }
    if let Some(text) = &want.reason
        && !got.reason.as_deref().unwrap_or("").contains(text.as_str())
    {
        differ("reason", format!("to contain {text:?}"), reason());
    }
    if want.variant.is_some() && want.variant != got.variant {
        differ("variant", shown(&want.variant), shown(&got.variant));
    }
    if want.branch.is_some() && want.branch != got.branch {
        differ("branch", shown(&want.branch), shown(&got.branch));
    }
    lines
}

fn shown<T: std::fmt::Display>(value: &Option<T>) -> String {
    value.as_ref().map_or("none".into(), |v| v.to_string())
}

/// JSON equality, with numbers compared by value (`150` is `150.0`).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn case(expect: Vec<Expected>) -> Case {
        Case {
            name: "c".into(),
            now: None,
            events: vec![json!({})],
            segments: BTreeMap::new(),
            expect,
            waiting: None,
        }
    }

    fn expected(contact: &str, data: Value, flows: &[(&str, &str)]) -> Expected {
        Expected {
            contact: contact.into(),
            event_id: None,
            data: data.as_object().cloned().unwrap_or_default(),
            flows: flows
                .iter()
                .map(|(f, s)| {
                    let decision = ExpectedDecision {
                        status: Some(s.to_string()),
                        ..ExpectedDecision::default()
                    };
                    (f.to_string(), decision)
                })
                .collect(),
        }
    }

    fn observed(contact: &str, data: Value, flow: (&str, &str, &str)) -> ObservedMatch {
        let decision = ObservedDecision {
            status: flow.1.into(),
            reason: Some(flow.2.into()),
            variant: Some("a".into()),
            branch: Some(0),
        };
        ObservedMatch {
            contact: contact.into(),
            event_id: None,
            data,
            flows: [(flow.0.to_string(), decision)].into(),
        }
    }

    #[test]
    fn a_run_that_does_what_the_case_says_passes() {
        let want = case(vec![expected(
            "email:a@x",
            json!({"v": 150}),
            &[("reengage", "pending")],
        )]);
        let got = Observed {
            matches: vec![observed(
                "email:a@x",
                json!({"v": 150.0, "n": 2}),
                ("reengage", "pending", ""),
            )],
            waiting: 0,
        };
        assert_eq!(differences(&want, &got), Vec::<String>::new());
    }

    #[test]
    fn every_difference_is_a_line() {
        let want = case(vec![
            expected("email:a@x", json!({"v": 150}), &[("reengage", "pending")]),
            expected("email:gone@x", json!({}), &[]),
        ]);
        let got = Observed {
            matches: vec![
                observed(
                    "email:a@x",
                    json!({"v": 99}),
                    ("reengage", "filtered", "frequency cap"),
                ),
                observed("email:extra@x", json!({}), ("reengage", "pending", "")),
            ],
            waiting: 0,
        };
        assert_eq!(
            differences(&want, &got),
            [
                "~ email:a@x: data.v: expected 150, got 99",
                "~ email:a@x: flow reengage: status: expected pending, got filtered (frequency cap)",
                "- a match for email:gone@x: none",
                "+ an unexpected match for email:extra@x with data {}",
            ]
        );
    }
}
