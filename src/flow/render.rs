//! What a planned delivery will send, rendered when it is planned so the
//! ledger holds exactly what goes out (and the same on a re-run): the
//! default webhook body or a `body` template (see `template`), a file line,
//! or an event to emit. No secret is ever part of a payload; signatures are
//! made when sending.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use arrow::datatypes::{Field, Schema};

use super::file::Action;
use super::template::{HOSTILE_SAMPLE, sample_data};
use crate::identity::resolve::IDENTITY_COLUMNS;
use crate::store::ledger::{DeliveryRecord, MatchRecord};

/// The run a delivery belongs to.
pub struct Rendering<'a> {
    pub workspace: &'a str,
    pub trigger: &'a str,
    pub run_id: &'a str,
    pub now: DateTime<Utc>,
}

/// The default body (docs/reference.md "Deliveries"): the delivery, its
/// contact and the match's data.
pub fn default_body(r: &Rendering, m: &MatchRecord, d: &DeliveryRecord) -> Value {
    json!({
        "delivery_id": d.delivery_id,
        "workspace": r.workspace,
        "flow": d.flow,
        "trigger": r.trigger,
        "run_id": r.run_id,
        "variant": d.variant,
        "branch": d.branch,
        "contact": {"email": m.email, "user_id": m.user_id, "client_id": m.client_id},
        "data": data(m),
    })
}

fn data(m: &MatchRecord) -> Value {
    serde_json::from_str(&m.data).unwrap_or(Value::Null)
}

/// The payload JSON the delivery worker acts on (see `deliver`).
pub fn render_payload(
    r: &Rendering,
    m: &MatchRecord,
    d: &DeliveryRecord,
    action: &Action,
) -> Result<String, String> {
    let payload = match action {
        Action::Webhook {
            url,
            body,
            timeout,
            rate_limit,
        } => {
            let body = match body {
                Some(template) => template.render(&default_body(r, m, d))?,
                None => default_body(r, m, d).to_string(),
            };
            let mut payload = json!({
                "kind": "webhook", "url": url, "body": body,
                "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            });
            if let Some(rate) = rate_limit {
                payload["rate_limit"] = json!(rate.to_string());
            }
            payload
        }
        Action::File { path } => json!({
            "kind": "file",
            "path": path.display().to_string(),
            "line": default_body(r, m, d).to_string(),
        }),
        Action::Event { name } => json!({
            "kind": "event",
            "event": {
                "name": name,
                "payload": data(m),
                "email": m.email,
                "user_id": m.user_id,
                "client_id": m.client_id,
                "event_id": d.delivery_id,
                "timestamp": r.now.to_rfc3339(),
            },
        }),
    };
    Ok(payload.to_string())
}

/// The context a body template sees in `check`: every field of the
/// default body, strings holding quotes and braces, and `data` typed like
/// the trigger's output (`output`: its columns, identity columns included).
pub fn sample_context(output: &Schema) -> Value {
    let columns: Vec<Field> = output
        .fields()
        .iter()
        .filter(|f| {
            !IDENTITY_COLUMNS.contains(&f.name().as_str()) && !f.name().starts_with("__tripwire")
        })
        .map(|f| f.as_ref().clone())
        .collect();
    let hostile = || Some(HOSTILE_SAMPLE.to_string());
    let matched = MatchRecord {
        ordinal: 0,
        contact: HOSTILE_SAMPLE.into(),
        event_id: hostile(),
        email: hostile(),
        user_id: hostile(),
        client_id: hostile(),
        data: sample_data(&columns).to_string(),
    };
    let delivery = DeliveryRecord {
        delivery_id: HOSTILE_SAMPLE.into(),
        flow: HOSTILE_SAMPLE.into(),
        action: HOSTILE_SAMPLE.into(),
        ordinal: 0,
        contact: HOSTILE_SAMPLE.into(),
        variant: hostile(),
        branch: Some(0),
        status: "pending".into(),
        reason: None,
        payload: None,
    };
    let rendering = Rendering {
        workspace: HOSTILE_SAMPLE,
        trigger: HOSTILE_SAMPLE,
        run_id: HOSTILE_SAMPLE,
        now: DateTime::<Utc>::UNIX_EPOCH,
    };
    default_body(&rendering, &matched, &delivery)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::template::BodyTemplate;
    use arrow::datatypes::DataType;
    use std::time::Duration;

    fn matched() -> MatchRecord {
        MatchRecord {
            ordinal: 0,
            contact: "email:a@x.com".into(),
            event_id: None,
            email: Some("a@x.com".into()),
            user_id: None,
            client_id: Some("c1".into()),
            data: r#"{"cart_value":120.5}"#.into(),
        }
    }

    fn delivery() -> DeliveryRecord {
        DeliveryRecord {
            delivery_id: "d1".into(),
            flow: "reengage".into(),
            action: "vip_hook".into(),
            ordinal: 0,
            contact: "email:a@x.com".into(),
            variant: Some("a".into()),
            branch: Some(0),
            status: "pending".into(),
            reason: None,
            payload: None,
        }
    }

    fn rendering() -> Rendering<'static> {
        Rendering {
            workspace: "shop",
            trigger: "cart_abandoned",
            run_id: "r1",
            now: DateTime::parse_from_rfc3339("2026-11-05T00:00:00Z")
                .unwrap()
                .to_utc(),
        }
    }

    #[test]
    fn the_default_body_is_specs() {
        let body = default_body(&rendering(), &matched(), &delivery());
        assert_eq!(
            body,
            json!({"delivery_id": "d1", "workspace": "shop", "flow": "reengage",
                   "trigger": "cart_abandoned", "run_id": "r1", "variant": "a", "branch": 0,
                   "contact": {"email": "a@x.com", "user_id": null, "client_id": "c1"},
                   "data": {"cart_value": 120.5}})
        );
    }

    #[test]
    fn templates_see_contact_and_data_and_fail_on_unknown_names() {
        let template = r#"{"email": {{ contact.email }}, "value": {{ data.cart_value }}}"#;
        let action = Action::Webhook {
            url: "http://127.0.0.1:9/vip".into(),
            body: Some(BodyTemplate::compile(template).unwrap()),
            timeout: Duration::from_secs(2),
            rate_limit: Some(crate::flow::rate::RateLimit::parse("20/s").unwrap()),
        };
        let payload: Value = serde_json::from_str(
            &render_payload(&rendering(), &matched(), &delivery(), &action).unwrap(),
        )
        .unwrap();
        assert_eq!(payload["body"], r#"{"email": "a@x.com", "value": 120.5}"#);
        assert_eq!(payload["timeout_ms"], 2000);
        assert_eq!(payload["rate_limit"], "20/s");
        let broken = Action::Webhook {
            url: "http://127.0.0.1:9/vip".into(),
            body: Some(BodyTemplate::compile("{{ data.nope }}").unwrap()),
            timeout: Duration::from_secs(2),
            rate_limit: None,
        };
        assert!(render_payload(&rendering(), &matched(), &delivery(), &broken).is_err());
    }

    #[test]
    fn the_sample_context_has_every_field_of_the_default_body() {
        let output = Schema::new(vec![
            Field::new("email", DataType::Utf8, true),
            Field::new("note", DataType::Utf8, true),
            Field::new("cart_value", DataType::Float64, true),
        ]);
        let context = sample_context(&output);
        assert_eq!(context["data"]["note"], HOSTILE_SAMPLE);
        assert_eq!(context["data"]["cart_value"], 42.0);
        assert!(
            context["data"].get("email").is_none(),
            "identity columns are not data"
        );
        assert_eq!(context["contact"]["email"], HOSTILE_SAMPLE);
        for field in [
            "delivery_id",
            "workspace",
            "flow",
            "trigger",
            "run_id",
            "variant",
            "branch",
        ] {
            assert!(!context[field].is_null(), "{field}");
        }
    }

    #[test]
    fn an_event_action_emits_a_name_payload_event_keyed_by_the_delivery() {
        let action = Action::Event {
            name: "vip_abandoned".into(),
        };
        let payload: Value = serde_json::from_str(
            &render_payload(&rendering(), &matched(), &delivery(), &action).unwrap(),
        )
        .unwrap();
        assert_eq!(payload["event"]["name"], "vip_abandoned");
        assert_eq!(payload["event"]["event_id"], "d1");
        assert_eq!(payload["event"]["payload"]["cart_value"], 120.5);
    }
}
