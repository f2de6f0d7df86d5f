//! A trigger's dry run on the page (what `POST /v1/triggers/{name}/preview`
//! and `tripwire preview` do: `run::run_trigger` with `commit: false`),
//! and each contact's why / why-not: how it resolved, and per flow and
//! action what would happen (sent, held out, filtered by a segment or the
//! cap, no branch, held over the guardrail), or that it waits for an
//! identity.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Web;
use crate::flow::FlowSetup;
use crate::run::{RunOutcome, RunRequest, run_trigger};
use crate::sql::limits::within;
use crate::store::ledger::{DeliveryRecord, MatchRecord, PendingRecord};
use crate::trigger::TriggerFile;

/// One line of the preview: a contact and what would happen to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Why {
    pub contact: String,
    /// How the row found its contact (or that it has none yet).
    pub resolved: String,
    pub flow: Option<String>,
    pub action: Option<String>,
    pub variant: Option<String>,
    pub branch: Option<i64>,
    pub status: String,
    /// The sentence: why or why not.
    pub verdict: String,
    /// The match's other columns (JSON).
    pub data: String,
}

/// Runs `trigger` without committing: over its new events, or over every
/// event with `whole_history`, at the clock `now`; stopped after
/// `query_timeout`, as the API's preview is.
pub async fn dry_run(
    web: &Web,
    workspace: &str,
    trigger: &TriggerFile,
    whole_history: bool,
    now: DateTime<Utc>,
) -> Result<RunOutcome, String> {
    let setup = FlowSetup::load(&web.config, &web.store, workspace)
        .await
        .map_err(|e| e.to_string())?;
    let request = RunRequest {
        store: &web.store,
        workspace,
        trigger,
        now,
        identity_ttl: web.config.identity_ttl,
        commit: false,
        whole_history,
        flows: &setup.flows,
        segments: &setup.segments,
        flow_errors: &setup.errors,
        max_failures: web.config.max_run_failures,
        identities: &web.identities,
    };
    within(web.config.limits.query_timeout, run_trigger(&request))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Every match with each of its planned deliveries (or none), then every
/// row that would wait for an identity.
pub fn explain(outcome: &RunOutcome) -> Vec<Why> {
    let mut lines = Vec::new();
    for m in &outcome.matches {
        let planned: Vec<&DeliveryRecord> = outcome
            .deliveries
            .iter()
            .filter(|d| d.ordinal == m.ordinal)
            .collect();
        if planned.is_empty() {
            lines.push(match_line(m, None));
        }
        lines.extend(planned.into_iter().map(|d| match_line(m, Some(d))));
    }
    lines.extend(outcome.pending.iter().map(waiting_line));
    lines
}

fn match_line(m: &MatchRecord, delivery: Option<&DeliveryRecord>) -> Why {
    let (status, verdict) = match delivery {
        Some(d) => (
            d.status.clone(),
            verdict(&d.status, d.reason.as_deref(), &d.action),
        ),
        None => (
            "matched".to_string(),
            "matches; no flow listens to this trigger".to_string(),
        ),
    };
    Why {
        contact: m.contact.clone(),
        resolved: resolution(&m.contact).to_string(),
        flow: delivery.map(|d| d.flow.clone()),
        action: delivery.map(|d| d.action.clone()),
        variant: delivery.and_then(|d| d.variant.clone()),
        branch: delivery.and_then(|d| d.branch),
        status,
        verdict,
        data: m.data.clone(),
    }
}

fn waiting_line(p: &PendingRecord) -> Why {
    let who = match (&p.user_id, &p.client_id) {
        (Some(user), _) => format!("user_id:{user}"),
        (None, Some(client)) => format!("client_id:{client}"),
        (None, None) => "(no identifier)".to_string(),
    };
    let until = DateTime::<Utc>::from_timestamp_micros(p.wait_until)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    Why {
        contact: who,
        resolved: "not yet: no identify names an email for it".into(),
        flow: None,
        action: None,
        variant: None,
        branch: None,
        status: "waiting".into(),
        verdict: format!("waits for an identity until {until}; fires once when one arrives"),
        data: p.row.clone(),
    }
}

/// How a contact was found, from its key (docs/reference.md "Contacts").
pub fn resolution(contact: &str) -> &'static str {
    match contact.split_once(':').map(|(kind, _)| kind) {
        Some("email") => "resolved to an email",
        Some("user_id") => "by user id (no email known)",
        Some("client_id") => "by device only (no person known)",
        _ => "unknown",
    }
}

/// Why a planned delivery would or would not be sent, beside its status
/// (the page shows the status as a badge, so the reason does not repeat it).
pub fn verdict(status: &str, reason: Option<&str>, action: &str) -> String {
    let reason = reason.filter(|r| !r.is_empty());
    match (status, reason) {
        ("pending", _) => format!("would send ({action})"),
        ("held", None) => "the run is over the flow's max_deliveries_per_run".to_string(),
        ("held_out", None) => "in the experiment's holdout".to_string(),
        ("shadow", None) => "recorded, not sent".to_string(),
        (_, Some(reason)) => reason.to_string(),
        (other, None) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunStatus;
    use crate::store::ledger::RunRecord;

    fn matched(ordinal: i64, contact: &str) -> MatchRecord {
        MatchRecord {
            ordinal,
            contact: contact.into(),
            event_id: None,
            email: None,
            user_id: None,
            client_id: None,
            data: "{}".into(),
        }
    }

    fn planned(ordinal: i64, status: &str, reason: Option<&str>) -> DeliveryRecord {
        DeliveryRecord {
            delivery_id: format!("d{ordinal}{status}"),
            flow: "reengage".into(),
            action: "audit".into(),
            ordinal,
            contact: String::new(),
            variant: Some("a".into()),
            branch: Some(1),
            status: status.into(),
            reason: reason.map(str::to_string),
            payload: None,
        }
    }

    fn outcome(
        matches: Vec<MatchRecord>,
        deliveries: Vec<DeliveryRecord>,
        pending: Vec<PendingRecord>,
    ) -> RunOutcome {
        let run = RunRecord {
            run_id: "r".into(),
            trigger: "t".into(),
            from_version: 0,
            to_version: 1,
            started_at: 0,
            finished_at: 0,
            clock: 0,
            matched: 0,
            resolved: 0,
            unresolved: 0,
            dropped: 0,
            pending: 0,
            expired: 0,
            held: 0,
            error: None,
        };
        RunOutcome {
            run,
            pending,
            matches,
            deliveries,
            status: RunStatus::Preview,
        }
    }

    #[test]
    fn each_match_is_paired_with_its_own_deliveries_by_ordinal() {
        let out = outcome(
            vec![matched(0, "email:a@x"), matched(1, "client_id:c-1")],
            vec![
                planned(1, "filtered", Some("in segment already_bought")),
                planned(0, "pending", None),
            ],
            Vec::new(),
        );
        let lines = explain(&out);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].contact, "email:a@x");
        assert_eq!(lines[0].verdict, "would send (audit)");
        assert_eq!(lines[0].resolved, "resolved to an email");
        assert_eq!(lines[1].contact, "client_id:c-1");
        assert_eq!(lines[1].verdict, "in segment already_bought");
        assert_eq!(lines[1].resolved, "by device only (no person known)");
    }

    #[test]
    fn a_match_no_flow_listens_to_and_a_row_waiting_for_its_identity() {
        let waiting = PendingRecord {
            pending_id: "p".into(),
            row: "{\"cart_value\":120}".into(),
            wait_until: 1_800_000_000_000_000,
            email: None,
            user_id: None,
            client_id: Some("c-9".into()),
        };
        let lines = explain(&outcome(
            vec![matched(0, "user_id:u")],
            Vec::new(),
            vec![waiting],
        ));
        assert_eq!(lines[0].verdict, "matches; no flow listens to this trigger");
        assert_eq!(lines[0].resolved, "by user id (no email known)");
        assert_eq!(lines[1].contact, "client_id:c-9");
        assert_eq!(lines[1].status, "waiting");
        assert!(
            lines[1].verdict.contains("2027-01-15 08:00:00 UTC"),
            "{}",
            lines[1].verdict
        );
    }

    #[test]
    fn verdicts_name_the_reason() {
        assert_eq!(
            verdict("held_out", Some("experiment holdout"), "audit"),
            "experiment holdout"
        );
        assert_eq!(
            verdict("held_out", None, "audit"),
            "in the experiment's holdout"
        );
        assert_eq!(verdict("filtered", None, "audit"), "filtered");
        assert_eq!(
            verdict("pending", Some("ignored"), "hook"),
            "would send (hook)"
        );
        assert!(verdict("held", None, "hook").contains("max_deliveries_per_run"));
    }
}
