//! Deterministic sample events for the example project, tests and benches:
//! the seeds' scenarios (cart abandoned, deposit started, orders that drop a
//! SKU's stock) plus page views and identify calls, in all three API shapes.
//! The same seed always gives the same bytes, and [`SampleTotals`] says what
//! was written so tests can check query results against it.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::json;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    pub events: u64,
    pub seed: u64,
    /// Time of the first event, epoch milliseconds.
    pub start_ms: i64,
    /// Milliseconds between consecutive events.
    pub step_ms: i64,
    /// The collect envelope's `partnerId`.
    pub workspace: String,
    /// The collect envelope's `partnerSecret`, if any.
    pub secret: Option<String>,
}

impl Default for SampleSpec {
    fn default() -> SampleSpec {
        SampleSpec {
            events: 5_000,
            seed: 7,
            // 2026-11-01T00:00:00Z
            start_ms: 1_793_491_200_000,
            step_ms: 60_000,
            workspace: "shop".into(),
            secret: None,
        }
    }
}

/// What a generated file holds, counted as it was written.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SampleTotals {
    pub events: u64,
    /// Track events per event name.
    pub per_name: BTreeMap<String, u64>,
    pub identifies: u64,
    /// Sum of `cart_value` over `cart_abandoned` events.
    pub cart_value_sum: f64,
    /// Events per shape: collect, segment, name_payload.
    pub per_shape: BTreeMap<&'static str, u64>,
}

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const PAGES: &[&str] = &["/", "/deposit", "/cart", "/products", "/account", "/help"];
const SKUS: &[&str] = &["SKU-100", "SKU-200", "SKU-300", "SKU-400", "SKU-500"];

/// One generated event: its shape, kind and JSON.
struct Sample {
    shape: &'static str,
    name: Option<&'static str>,
    cart_value: f64,
    json: serde_json::Value,
}

/// Writes `spec.events` NDJSON lines to `out`.
pub fn write_ndjson(spec: &SampleSpec, out: &mut impl Write) -> io::Result<SampleTotals> {
    let mut rng = Rng(spec.seed);
    let users = (spec.events / 20).max(5);
    let mut totals = SampleTotals::default();
    let mut line = Vec::with_capacity(1024);
    for i in 0..spec.events {
        let sample = generate(spec, &mut rng, users, i);
        line.clear();
        serde_json::to_writer(&mut line, &sample.json)?;
        line.push(b'\n');
        out.write_all(&line)?;
        totals.events += 1;
        *totals.per_shape.entry(sample.shape).or_default() += 1;
        match sample.name {
            Some(name) => *totals.per_name.entry(name.to_string()).or_default() += 1,
            None => totals.identifies += 1,
        }
        totals.cart_value_sum += sample.cart_value;
    }
    Ok(totals)
}

fn generate(spec: &SampleSpec, rng: &mut Rng, users: u64, i: u64) -> Sample {
    let user = rng.below(users);
    let person = Person {
        client_id: format!(
            "c{:08x}-{:04x}",
            user.wrapping_mul(2_654_435_761) & 0xffff_ffff,
            user & 0xffff
        ),
        user_id: format!("u{user}"),
        email: format!("user{user}@example.com"),
    };
    let time_ms = spec.start_ms + i as i64 * spec.step_ms;
    let message_id = format!("{:016x}-{i}", spec.seed);
    let roll = rng.below(100);
    let (name, payload, cart_value) = match roll {
        0..=9 => (None, json!({}), 0.0),
        10..=49 => (
            Some("page_view"),
            json!({"url": PAGES[rng.below(PAGES.len() as u64) as usize], "duration_ms": rng.below(30_000)}),
            0.0,
        ),
        50..=64 => {
            let value = (rng.below(40_000) as f64) / 100.0;
            let items = 1 + rng.below(6);
            (
                Some("cart_abandoned"),
                json!({"cart_value": value, "items": items, "currency": "USD"}),
                value,
            )
        }
        65..=79 => (
            Some("deposit_started"),
            json!({"amount": 10 * (1 + rng.below(100)), "method": if rng.below(2) == 0 { "card" } else { "bank" }}),
            0.0,
        ),
        _ => (
            Some("order_completed"),
            json!({
                "sku": SKUS[rng.below(SKUS.len() as u64) as usize],
                "quantity": 1 + rng.below(4),
                "stock_remaining": rng.below(200),
                "total": (rng.below(50_000) as f64) / 100.0
            }),
            0.0,
        ),
    };
    let shape = match rng.below(20) {
        0..=9 => "collect",
        10..=16 => "segment",
        _ => "name_payload",
    };
    // Identify calls are never in the name/payload shape, which has no identify.
    let shape = if name.is_none() && shape == "name_payload" {
        "segment"
    } else {
        shape
    };
    let json = match shape {
        "collect" => collect_json(spec, &person, name, payload, time_ms, &message_id),
        "segment" => segment_json(&person, name, payload, time_ms, &message_id),
        _ => name_payload_json(
            &person,
            name.unwrap_or_default(),
            payload,
            time_ms,
            &message_id,
        ),
    };
    Sample {
        shape,
        name,
        cart_value,
        json,
    }
}

struct Person {
    client_id: String,
    user_id: String,
    email: String,
}

fn collect_json(
    spec: &SampleSpec,
    p: &Person,
    name: Option<&str>,
    payload: serde_json::Value,
    time_ms: i64,
    message_id: &str,
) -> serde_json::Value {
    let mut event = json!({
        "partnerId": spec.workspace,
        "clientId": p.client_id,
        "context": {"debug": false, "library": {"name": "tripwire-sample", "version": "1"}},
        "sentAt": time_ms,
        "messageId": message_id,
        "event": "custom",
    });
    if let Some(secret) = &spec.secret {
        event["partnerSecret"] = json!(secret);
    }
    match name {
        Some(name) => {
            event["type"] = json!("track");
            event["properties"] = json!({"eventName": name, "properties": payload});
            // Anonymous visitors: no traits, so identity comes from identify calls.
            if !p.user_id.ends_with('0') {
                event["traits"] = json!({"userId": p.user_id});
            }
        }
        None => {
            event["type"] = json!("identify");
            event["traits"] = json!({"userId": p.user_id, "email": p.email});
        }
    }
    event
}

fn segment_json(
    p: &Person,
    name: Option<&str>,
    payload: serde_json::Value,
    time_ms: i64,
    message_id: &str,
) -> serde_json::Value {
    let timestamp = chrono::DateTime::from_timestamp_millis(time_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut event = json!({
        "anonymousId": p.client_id,
        "userId": p.user_id,
        "messageId": message_id,
        "timestamp": timestamp,
        "context": {"library": {"name": "analytics.js", "version": "4.1.0"}, "ip": "203.0.113.7"},
        "integrations": {},
    });
    match name {
        Some(name) => {
            event["type"] = json!("track");
            event["event"] = json!(name);
            event["properties"] = payload;
        }
        None => {
            event["type"] = json!("identify");
            event["traits"] = json!({"email": p.email, "plan": "free"});
        }
    }
    event
}

fn name_payload_json(
    p: &Person,
    name: &str,
    payload: serde_json::Value,
    time_ms: i64,
    message_id: &str,
) -> serde_json::Value {
    json!({
        "name": name,
        "payload": payload,
        "email": p.email,
        "event_id": message_id,
        "timestamp": time_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_totals_add_up() {
        let spec = SampleSpec {
            events: 500,
            ..SampleSpec::default()
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let totals = write_ndjson(&spec, &mut a).unwrap();
        write_ndjson(&spec, &mut b).unwrap();
        assert_eq!(a, b);
        let named: u64 = totals.per_name.values().sum();
        assert_eq!(named + totals.identifies, 500);
        assert_eq!(a.iter().filter(|c| **c == b'\n').count(), 500);
        assert_eq!(totals.per_shape.len(), 3);
    }

    #[test]
    fn every_sample_line_parses() {
        let spec = SampleSpec {
            events: 300,
            ..SampleSpec::default()
        };
        let mut out = Vec::new();
        write_ndjson(&spec, &mut out).unwrap();
        for line in String::from_utf8(out).unwrap().lines() {
            crate::event::shapes::parse_event(line).unwrap();
        }
    }
}
