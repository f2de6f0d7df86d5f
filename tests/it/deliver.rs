//! The delivery worker against a real HTTP receiver on loopback: planned
//! deliveries are written to the fire ledger through the library (the
//! contract flows plan to), then delivered by the library or the binary;
//! the outcome is read back from the `deliveries` view, the `attempts`
//! history, the receiver's log, files and the `events` table.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tripwire::config::Config;
use tripwire::deliver::{
    CLAIM_MARGIN, Clock, Deliverer, DeliveryLimits, DeliverySummary, WEBHOOK_CONCURRENCY,
    deliver_due, redeliver,
};
use tripwire::session::{SessionSpec, workspace_session};
use tripwire::sql::output::{OutputFormat, render};
use tripwire::sql::run_read_only;
use tripwire::store::commit::{Always, commit};
use tripwire::store::ledger::{DeliveryRecord, RunRecord, RunRows, run_batch};
use tripwire::store::{Store, TableKind};

use crate::project::{Project, SECRET};
use crate::recorder::{Recorder, closed_port};

pub const SIGNING_SECRET: &str = "whsec_test";

/// A project whose workspace `shop` signs webhooks, with the library's
/// view of the same config and storage.
pub struct Setup {
    pub project: Project,
    pub config: Config,
    pub store: Store,
}

impl Setup {
    pub fn new() -> Setup {
        let project = Project::with_config(&format!(
            "storage = \"./store\"\n[[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\n\
             signing_secret = \"{SIGNING_SECRET}\"\n"
        ));
        let config = Config::load(Some(&project.path("tripwire.toml"))).unwrap();
        let store = Store::new(config.storage.clone());
        Setup {
            project,
            config,
            store,
        }
    }

    /// Commits one run planning `deliveries` at `planned`, as a trigger run does.
    pub async fn plan(&self, run_id: &str, deliveries: &[DeliveryRecord], planned: DateTime<Utc>) {
        let at = planned.timestamp_micros();
        let run = RunRecord {
            run_id: run_id.into(),
            trigger: "cart_abandoned".into(),
            from_version: -1,
            to_version: 0,
            started_at: at,
            finished_at: at,
            clock: at,
            matched: deliveries.len() as i64,
            resolved: deliveries.len() as i64,
            unresolved: 0,
            dropped: 0,
            pending: 0,
            expired: 0,
            held: 0,
            error: None,
        };
        let mut ledger = self
            .store
            .open_or_create("shop", TableKind::Ledger)
            .await
            .unwrap();
        let deliveries: Vec<DeliveryRecord> = deliveries
            .iter()
            .enumerate()
            .map(|(i, d)| DeliveryRecord {
                ordinal: i as i64,
                ..d.clone()
            })
            .collect();
        let rows = RunRows {
            deliveries: &deliveries,
            ..RunRows::default()
        };
        let batches = run_batch(&run, &rows);
        commit(&mut ledger, &mut Always(batches)).await.unwrap();
    }

    /// Delivers what is due at `now`, with the worker's clock pinned there too.
    pub async fn deliver(&self, now: DateTime<Utc>) -> DeliverySummary {
        self.deliver_with(Clock::fixed(now), now).await
    }

    /// Delivers what is due at `due_at`, each attempt reading `clock`.
    pub async fn deliver_with(&self, clock: Clock, due_at: DateTime<Utc>) -> DeliverySummary {
        let deliverer = Deliverer::new(DeliveryLimits::default()).with_clock(clock);
        let summary = deliverer
            .deliver_due(&self.store, &self.config, "shop", due_at)
            .await
            .unwrap();
        deliverer.leave(&self.store).await;
        summary
    }

    /// Rows of a query over the workspace's tables, as JSON objects.
    pub async fn query(&self, sql: &str) -> Vec<Value> {
        let spec = SessionSpec {
            store: &self.store,
            workspace: "shop",
            now: Utc::now(),
            identity_ttl: Duration::from_secs(7 * 86_400),
            events: None,
        };
        let ctx = workspace_session(&spec).await.unwrap();
        let batches = run_read_only(&ctx, sql).await.unwrap();
        render(&batches, OutputFormat::Json)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The `deliveries` row of one delivery.
    pub async fn delivery(&self, id: &str) -> Value {
        let rows = self
            .query(&format!(
                "SELECT status, attempts, last_error, CAST(next_attempt_at AS BIGINT) AS next_us,
                        delivered_at IS NOT NULL AS has_delivered_at
                 FROM deliveries WHERE delivery_id = '{id}'"
            ))
            .await;
        assert_eq!(rows.len(), 1, "{id}: {rows:?}");
        rows[0].clone()
    }

    /// When a failed delivery is due again.
    pub async fn next_attempt_at(&self, id: &str) -> DateTime<Utc> {
        let row = self.delivery(id).await;
        let micros = row["next_us"]
            .as_i64()
            .expect("a failed delivery has a next try");
        DateTime::from_timestamp_micros(micros).unwrap()
    }

    /// Runs the binary without blocking the receiver's runtime.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        tokio::task::block_in_place(|| self.project.run(args))
    }
}

pub fn delivery(id: &str, payload: Value) -> DeliveryRecord {
    DeliveryRecord {
        delivery_id: id.into(),
        flow: "reengage".into(),
        action: "hook".into(),
        ordinal: 0,
        contact: format!("email:{id}@example.com"),
        variant: Some("a".into()),
        branch: Some(0),
        status: "pending".into(),
        reason: None,
        payload: Some(payload.to_string()),
    }
}

pub fn webhook(id: &str, url: &str) -> DeliveryRecord {
    let body = json!({"delivery_id": id, "contact": {"email": format!("{id}@example.com")}});
    delivery(
        id,
        json!({"kind": "webhook", "url": url, "body": body.to_string(), "timeout_ms": 5000}),
    )
}

pub fn planned_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn hmac_hex(t: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_carries_its_exact_body_its_idempotency_key_and_a_signature_that_verifies() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    let planned = planned_now();
    let d = webhook("d-sign", &url);
    setup.plan("run-1", std::slice::from_ref(&d), planned).await;

    let summary = setup.deliver(planned).await;

    assert_eq!(summary.delivered, 1, "{summary}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let payload: Value = serde_json::from_str(d.payload.as_deref().unwrap()).unwrap();
    assert_eq!(request.body, payload["body"].as_str().unwrap());
    assert_eq!(request.key, "d-sign");
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    let signature = request.signature.as_deref().expect("signed");
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .expect("t=<unix>,v1=<hex>");
    assert_eq!(t, planned.timestamp().to_string());
    assert_eq!(v1, hmac_hex(t, &request.body), "the signature verifies");
    let row = setup.delivery("d-sign").await;
    assert_eq!(row["status"], "delivered");
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["has_delivered_at"], true);
    assert_eq!(setup.deliver(planned).await, DeliverySummary::default());
    assert_eq!(
        receiver.requests().len(),
        1,
        "a delivered delivery is not sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_the_delivery_on_the_third_try_with_the_same_key() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    receiver.fail_next(500, None, 2);
    let planned = planned_now();
    setup
        .plan("run-1", &[webhook("d-flaky", &url)], planned)
        .await;

    assert_eq!(setup.deliver(planned).await.failed, 1);
    let first_retry = setup.next_attempt_at("d-flaky").await;
    assert!(first_retry > planned, "backoff: {first_retry}");
    let early = first_retry - chrono::Duration::milliseconds(1);
    assert!(
        setup.deliver(early).await.is_empty(),
        "not due before its next try"
    );
    assert_eq!(setup.deliver(first_retry).await.failed, 1);
    let second_retry = setup.next_attempt_at("d-flaky").await;
    assert!(
        second_retry - first_retry >= chrono::Duration::seconds(1),
        "the wait doubles"
    );
    assert_eq!(setup.deliver(second_retry).await.delivered, 1);

    let keys: Vec<String> = receiver.requests().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, ["d-flaky", "d-flaky", "d-flaky"]);
    let row = setup.delivery("d-flaky").await;
    assert_eq!(row["status"], "delivered");
    assert_eq!(row["attempts"], 3);
    let history = setup
        .query("SELECT attempt, status, http_status FROM attempts ORDER BY attempt")
        .await;
    assert_eq!(
        history,
        [
            json!({"attempt": 1, "status": "failed", "http_status": 500}),
            json!({"attempt": 2, "status": "failed", "http_status": 500}),
            json!({"attempt": 3, "status": "delivered", "http_status": 200}),
        ]
    );
    assert!(
        setup
            .deliver(second_retry + chrono::Duration::hours(2))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    receiver.fail_next(429, Some("5"), 1);
    let planned = planned_now();
    setup
        .plan("run-1", &[webhook("d-429", &url)], planned)
        .await;

    assert_eq!(setup.deliver(planned).await.failed, 1);

    let next = setup.next_attempt_at("d-429").await;
    assert!(next >= planned + chrono::Duration::seconds(5), "{next}");
    assert!(
        setup
            .deliver(next - chrono::Duration::milliseconds(1))
            .await
            .is_empty()
    );
    assert_eq!(setup.deliver(next).await.delivered, 1);
    assert_eq!(receiver.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dead_at_once_and_listed_as_dead() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    receiver.fail_next(400, None, 1);
    let planned = planned_now();
    let hooks = [webhook("d-bad", &url), webhook("d-good", &url)];
    setup.plan("run-1", &hooks, planned).await;

    let summary = setup.deliver(planned).await;

    assert_eq!((summary.dead, summary.delivered), (1, 1), "{summary}");
    let dead_id = &receiver.requests()[0].key;
    let row = setup.delivery(dead_id).await;
    assert_eq!(row["status"], "dead");
    let error = row["last_error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 400") && error.contains("receiver says no"),
        "{error}"
    );
    assert!(
        setup
            .deliver(planned + chrono::Duration::days(3))
            .await
            .is_empty()
    );
    assert_eq!(
        receiver.requests().len(),
        2,
        "a refused delivery is not retried"
    );

    let out = setup.run(&["deliveries", "--dead", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(&listed[0]["delivery_id"], dead_id.as_str());
    assert_eq!(listed[0]["attempts"], 1);
    let all = setup.run(&["deliveries", "--format", "csv"]);
    assert_eq!(
        String::from_utf8_lossy(&all.stdout).lines().count(),
        3,
        "a header, two rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_past_the_retry_period_is_dead_until_redelivered() {
    let setup = Setup::new();
    let port = closed_port();
    let url = format!("http://{port}/hook");
    let planned = planned_now();
    setup
        .plan("run-1", &[webhook("d-down", &url)], planned)
        .await;

    assert_eq!(setup.deliver(planned).await.failed, 1);
    let failed = setup.delivery("d-down").await;
    assert!(
        failed["last_error"].as_str().unwrap().contains("connect"),
        "{failed}"
    );
    let summary = setup.deliver(planned + chrono::Duration::hours(25)).await;
    assert_eq!(summary.dead, 1, "{summary}");
    let dead = setup.delivery("d-down").await;
    assert_eq!(
        (&dead["status"], &dead["attempts"]),
        (&json!("dead"), &json!(2))
    );

    let refused = setup.run(&["redeliver", "d-down", "no-such-id"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no-such-id: no such delivery"));
    let receiver = Recorder::default();
    receiver.start(&port.to_string()).await;
    let out = setup.run(&["redeliver", "d-down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("delivered 1"));

    assert_eq!(
        receiver.per_key(),
        HashMap::from([("d-down".to_string(), 1)])
    );
    let row = setup.delivery("d-down").await;
    assert_eq!(
        (&row["status"], &row["attempts"]),
        (&json!("delivered"), &json!(3))
    );
    let again = setup.run(&["redeliver", "d-down"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("delivered already"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_recording_sends_again_and_records_each_delivery_once() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    let planned = planned_now();
    let mut planned_deliveries: Vec<DeliveryRecord> = (0..40)
        .map(|i| webhook(&format!("d{i:02}"), &url))
        .collect();
    planned_deliveries.extend((0..5).map(|i| chained_event(&format!("e{i}"))));
    setup.plan("run-1", &planned_deliveries, planned).await;

    let pause = tempfile::tempdir().unwrap();
    let mut child = setup
        .project
        .command(&["deliver"])
        .env("TRIPWIRE_PAUSE_BEFORE_RECORD", pause.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pause.path().join("paused").exists() {
        assert!(Instant::now() < deadline, "the worker never paused");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the worker ended early"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(receiver.requests().len(), 40, "sent before the crash");
    let unrecorded = setup.query("SELECT count(*) AS n FROM attempts").await;
    assert_eq!(unrecorded[0]["n"], 0);

    // Its claims hold until they expire; then another worker takes them over.
    let patience = Instant::now() + CLAIM_MARGIN + Duration::from_secs(90);
    loop {
        let out = setup.run(&["deliver"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let delivered = setup
            .query("SELECT count(*) AS n FROM deliveries WHERE status = 'delivered'")
            .await;
        if delivered[0]["n"] == 45 {
            break;
        }
        assert!(Instant::now() < patience, "never taken over: {delivered:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let per_key = receiver.per_key();
    assert_eq!(per_key.len(), 40);
    assert!(
        per_key.values().all(|n| *n == 2),
        "re-sent once, same key: {per_key:?}"
    );
    let statuses = setup
        .query(
            "SELECT status, count(*) AS n, max(attempts) AS most FROM deliveries GROUP BY status",
        )
        .await;
    assert_eq!(
        statuses,
        [json!({"status": "delivered", "n": 45, "most": 1})]
    );
    let delivered_rows = setup
        .query(
            "SELECT count(*) AS n, count(DISTINCT delivery_id) AS ids FROM attempts
             WHERE status = 'delivered'",
        )
        .await;
    assert_eq!(delivered_rows, [json!({"n": 45, "ids": 45})]);
    let events = setup
        .query("SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events")
        .await;
    assert_eq!(
        events,
        [json!({"n": 5, "ids": 5})],
        "emitted once across the crash"
    );
}

fn chained_event(id: &str) -> DeliveryRecord {
    let event = json!({
        "name": "vip_abandoned", "payload": {"cart_value": 120.5},
        "email": format!("{id}@example.com"), "user_id": null, "client_id": null,
        "event_id": id, "timestamp": "2026-11-05T00:00:00+00:00",
    });
    let mut d = delivery(id, json!({"kind": "event", "event": event}));
    d.action = "chain".into();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_lines_and_emitted_events_are_stored_once_when_the_worker_runs_twice() {
    let setup = Setup::new();
    let audit = setup.project.path("out/audit.ndjson");
    let other = setup.project.path("out/nested/other.ndjson");
    let line = |id: &str, path: &std::path::Path| {
        let mut d = delivery(
            id,
            json!({"kind": "file", "path": path.display().to_string(),
                   "line": json!({"delivery_id": id}).to_string()}),
        );
        d.action = "audit".into();
        d
    };
    let planned = planned_now();
    let deliveries = [
        line("f1", &audit),
        line("f2", &other),
        line("f3", &audit),
        chained_event("e1"),
        chained_event("e2"),
    ];
    setup.plan("run-1", &deliveries, planned).await;

    assert_eq!(setup.deliver(planned).await.delivered, 5);
    assert!(
        setup
            .deliver(planned + chrono::Duration::hours(1))
            .await
            .is_empty()
    );

    let audit_lines = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(
        audit_lines,
        "{\"delivery_id\":\"f1\"}\n{\"delivery_id\":\"f3\"}\n"
    );
    assert_eq!(
        std::fs::read_to_string(&other).unwrap(),
        "{\"delivery_id\":\"f2\"}\n"
    );
    let events = setup
        .query(
            "SELECT event_id, event_name, email, json_get_float(properties, 'cart_value') AS v
             FROM events ORDER BY event_id",
        )
        .await;
    let expected: Vec<Value> = ["e1", "e2"]
        .iter()
        .map(|id| {
            let email = format!("{id}@example.com");
            json!({"event_id": id, "event_name": "vip_abandoned", "email": email, "v": 120.5})
        })
        .collect();
    assert_eq!(events, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_racing_record_each_delivery_delivered_once() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    let planned = planned_now();
    let hooks: Vec<DeliveryRecord> = (0..300)
        .map(|i| webhook(&format!("r{i:03}"), &url))
        .collect();
    setup.plan("run-1", &hooks, planned).await;
    let limits = DeliveryLimits {
        batch: 100,
        ..DeliveryLimits::default()
    };
    let worker = || deliver_due(&setup.store, &setup.config, "shop", planned, &limits);

    let (a, b) = tokio::join!(worker(), worker());

    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.delivered + b.delivered, 300, "{a} / {b}");
    let recorded = setup
        .query(
            "SELECT count(*) AS n, count(DISTINCT delivery_id) AS ids FROM attempts
             WHERE status = 'delivered'",
        )
        .await;
    assert_eq!(recorded, [json!({"n": 300, "ids": 300})]);
    assert_eq!(receiver.per_key().len(), 300);
    assert_eq!(
        receiver.requests().len(),
        300,
        "each sent by one of them: {a} / {b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_through_the_library_resets_only_failed_or_dead() {
    let setup = Setup::new();
    let url = format!("http://{}/hook", closed_port());
    let planned = planned_now();
    let mut held = webhook("d-held", &url);
    held.status = "held_out".into();
    held.variant = Some("holdout".into());
    setup
        .plan("run-1", &[webhook("d-fail", &url), held], planned)
        .await;
    assert_eq!(
        setup.deliver(planned).await.failed,
        1,
        "a held-out delivery is not sent"
    );

    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let refused = redeliver(&setup.store, "shop", &ids(&["d-fail", "d-held"]), planned).await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("d-held: held_out")
    );
    let reset = redeliver(&setup.store, "shop", &ids(&["d-fail"]), planned).await;
    assert_eq!(reset.unwrap(), 1);
    let row = setup.delivery("d-fail").await;
    assert_eq!(
        (&row["status"], &row["attempts"]),
        (&json!("pending"), &json!(1))
    );
    let held = setup.delivery("d-held").await;
    assert_eq!(
        (&held["status"], &held["attempts"]),
        (&json!("held_out"), &json!(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_reads_the_workers_clock_as_it_is_sent() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    let planned = planned_now();
    let hooks: Vec<DeliveryRecord> = (0..3).map(|i| webhook(&format!("c{i}"), &url)).collect();
    setup.plan("run-1", &hooks, planned).await;
    // A clock one minute later at every read: each request must read it.
    let reads = Arc::new(AtomicI64::new(0));
    let clock = {
        let reads = reads.clone();
        Clock::from_fn(move || planned + chrono::Duration::minutes(reads.fetch_add(1, SeqCst)))
    };

    let summary = setup.deliver_with(clock, planned).await;

    assert_eq!(summary.delivered, 3, "{summary}");
    let recorded: HashMap<String, i64> = setup
        .query("SELECT delivery_id, CAST(attempted_at AS BIGINT) AS us FROM attempts")
        .await
        .iter()
        .map(|r| {
            (
                r["delivery_id"].as_str().unwrap().to_string(),
                r["us"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut stamps = Vec::new();
    for request in receiver.requests() {
        let signature = request.signature.as_deref().expect("signed");
        let t: i64 = signature[2..signature.find(',').unwrap()].parse().unwrap();
        assert!(t > planned.timestamp(), "read after the batch began: {t}");
        assert_eq!(
            recorded[&request.key].div_euclid(1_000_000),
            t,
            "attempted_at is the signature's time"
        );
        stamps.push(t);
    }
    stamps.sort_unstable();
    stamps.dedup();
    assert_eq!(stamps.len(), 3, "one clock reading per request: {stamps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_first_tried_after_an_outage_longer_than_the_retry_period_is_retried_not_dead() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    receiver.fail_next(503, None, 4);
    let planned = planned_now() - chrono::Duration::hours(30);
    let hooks = [webhook("o1", &url), webhook("o2", &url)];
    setup.plan("run-1", &hooks, planned).await;
    let far = (Utc::now() + chrono::Duration::days(3650)).to_rfc3339();

    let before = Utc::now();
    let first = setup.run(&["deliver", "--now", &far]);
    let second = setup.run(&["deliver", "--now", &far]);

    for out in [&first, &second] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("failed 2 (retried later), dead 0"), "{said}");
    }
    for id in ["o1", "o2"] {
        let row = setup.delivery(id).await;
        assert_eq!(
            (&row["status"], &row["attempts"]),
            (&json!("failed"), &json!(2)),
            "{id}: planned 30 h ago, first tried now: {row}"
        );
        let next = setup.next_attempt_at(id).await;
        assert!(next > before, "the next try is by the wall clock: {next}");
    }
    assert_eq!(receiver.requests().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_whole_action_for_its_retry_after() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    receiver.fail_next(429, Some("2"), 1);
    let planned = planned_now();
    let hooks: Vec<DeliveryRecord> = (0..4)
        .map(|i| {
            let mut d = webhook(&format!("p{i}"), &url);
            let mut payload: Value = serde_json::from_str(d.payload.as_deref().unwrap()).unwrap();
            payload["rate_limit"] = json!("1/s");
            d.payload = Some(payload.to_string());
            d
        })
        .collect();
    setup.plan("run-1", &hooks, planned).await;

    let summary = setup.deliver_with(Clock::system(), planned).await;

    assert_eq!((summary.delivered, summary.failed), (3, 1), "{summary}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[0].status, 429);
    let paused = requests[1].at - requests[0].at;
    assert!(
        paused >= Duration::from_secs(2),
        "the action waited out Retry-After: {paused:?}"
    );
    for pair in requests[1..].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(900), "1/s: {gap:?}");
    }
    let throttled = setup.delivery(&requests[0].key).await;
    assert_eq!(throttled["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_recorded_attempts_are_swept_once_an_hour_old() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    // Nothing listens there: s3 fails and stays open, to be retried.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", listener.local_addr().unwrap())
    };
    let planned = planned_now();
    setup
        .plan(
            "run-1",
            &[
                webhook("s1", &url),
                webhook("s2", &url),
                webhook("s3", &closed_port),
            ],
            planned,
        )
        .await;
    // Claims are records of the workspace's journal; files in `claims/`
    // are claims an earlier version left, swept alike.
    let journal = setup.project.path("store/shop/state/claim-journal");
    let claims = setup.project.path("store/shop/state/claims");
    let names = || {
        let mut names: Vec<String> = tripwire::store::journal::read_log(&journal)
            .unwrap()
            .into_keys()
            .collect();
        if claims.exists() {
            let files = std::fs::read_dir(&claims).unwrap();
            names.extend(files.map(|e| e.unwrap().file_name().into_string().unwrap()));
        }
        names.sort();
        names
    };

    let first = setup.deliver_with(Clock::system(), planned).await;
    assert_eq!((first.delivered, first.failed), (2, 1), "{first}");
    assert_eq!(names(), ["s1.1.0", "s2.1.0", "s3.1.0"], "kept while fresh");
    let stale =
        r#"{"node":"n","claimed_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-01T00:00:00Z"}"#;
    std::fs::create_dir_all(&claims).unwrap();
    std::fs::write(claims.join("s1.7.0"), stale).unwrap();
    std::fs::write(claims.join("s3.7.0"), stale).unwrap();
    let later = Utc::now() + chrono::Duration::hours(2);
    // Due at `planned`: s3's retry is not due yet; this call only sweeps.
    assert!(
        setup
            .deliver_with(Clock::fixed(later), planned)
            .await
            .is_empty()
    );

    assert_eq!(
        names(),
        ["s3.7.0"],
        "an open delivery keeps the claims of attempts not recorded; \
         a delivered one's claims all go"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_file_path_outside_the_project_is_dead_and_nothing_is_written() {
    let setup = Setup::new();
    let outside = tempfile::tempdir().unwrap();
    let absolute = outside.path().join("abs.ndjson");
    let escape_name = format!("escape-{}.ndjson", std::process::id());
    let file = |id: &str, path: String| {
        let mut d = delivery(
            id,
            json!({"kind": "file", "path": path, "line": json!({"delivery_id": id}).to_string()}),
        );
        d.action = "audit".into();
        d
    };
    let planned = planned_now();
    let deliveries = [
        file("f-dotdot", format!("../{escape_name}")),
        file("f-abs", absolute.display().to_string()),
        file("f-inside", "out/ok.ndjson".into()),
    ];
    setup.plan("run-1", &deliveries, planned).await;

    let summary = setup.deliver(planned).await;

    assert_eq!((summary.dead, summary.delivered), (2, 1), "{summary}");
    for id in ["f-dotdot", "f-abs"] {
        let row = setup.delivery(id).await;
        assert_eq!(row["status"], "dead", "{id}");
        let error = row["last_error"].as_str().unwrap();
        assert!(error.starts_with("file path refused"), "{id}: {error}");
    }
    assert!(!absolute.exists());
    let parent = setup.project.dir.path().parent().unwrap();
    assert!(!parent.join(&escape_name).exists());
    assert!(setup.project.path("out/ok.ndjson").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_one_receiver_share_a_few_kept_alive_connections_across_batches_and_calls() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    let planned = planned_now();
    let first: Vec<DeliveryRecord> = (0..300)
        .map(|i| webhook(&format!("k{i:03}"), &url))
        .collect();
    setup.plan("run-1", &first, planned).await;
    let limits = DeliveryLimits {
        batch: 50,
        ..DeliveryLimits::default()
    };
    let worker = Deliverer::new(limits);
    let summary = worker
        .deliver_due(&setup.store, &setup.config, "shop", planned)
        .await
        .unwrap();
    assert_eq!(summary.delivered, 300, "{summary}");
    // At most WEBHOOK_CONCURRENCY requests are in flight; a connection is
    // back in the pool a moment after its answer, so a few more may open.
    let after_first = receiver.connections();
    assert!(
        (1..=2 * WEBHOOK_CONCURRENCY).contains(&after_first),
        "300 requests in 6 batches over {after_first} connections"
    );

    let second: Vec<DeliveryRecord> = (0..100)
        .map(|i| webhook(&format!("m{i:03}"), &url))
        .collect();
    setup.plan("run-2", &second, planned).await;
    let summary = worker
        .deliver_due(&setup.store, &setup.config, "shop", planned)
        .await
        .unwrap();
    worker.leave(&setup.store).await;
    assert_eq!(summary.delivered, 100, "{summary}");
    assert_eq!(receiver.requests().len(), 400);
    let opened = receiver.connections() - after_first;
    assert!(
        opened < WEBHOOK_CONCURRENCY / 2,
        "the next call reuses them: it opened {opened} more"
    );
}
