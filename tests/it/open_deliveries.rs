//! The delivery worker's open-deliveries index against the `deliveries`
//! view: through a mixed history (delivered, retried, dead, held, released,
//! discarded, redelivered), the deliveries the index holds open, and how
//! they stand, are the view's, whether the index was caught up call by
//! call, started from a snapshot, or rebuilt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::SeqCst};

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::{Value, json};
use tripwire::deliver::{
    Clock, Decision, Deliverer, DeliveryLimits, OpenDelivery, decide_held, redeliver,
};
use tripwire::store::ledger::DeliveryRecord;

use crate::deliver::{Setup, planned_now, webhook};
use crate::recorder::{Recorder, closed_port};

/// A worker whose clock the test steps, kept across calls (as `serve` keeps one).
struct Keeper {
    worker: Deliverer,
    now: Arc<AtomicI64>,
}

impl Keeper {
    fn new(start: DateTime<Utc>) -> Keeper {
        let now = Arc::new(AtomicI64::new(start.timestamp_micros()));
        let read = now.clone();
        let clock = Clock::from_fn(move || {
            DateTime::from_timestamp_micros(read.load(SeqCst)).expect("a time")
        });
        let limits = DeliveryLimits {
            batch: 7,
            ..DeliveryLimits::default()
        };
        Keeper {
            worker: Deliverer::new(limits).with_clock(clock),
            now,
        }
    }

    async fn deliver_at(&self, setup: &Setup, at: DateTime<Utc>) {
        self.now.store(at.timestamp_micros(), SeqCst);
        self.worker
            .deliver_due(&setup.store, &setup.config, "shop", at)
            .await
            .unwrap();
    }
}

fn in_flow(mut d: DeliveryRecord, flow: &str, status: &str) -> DeliveryRecord {
    d.flow = flow.into();
    d.status = status.into();
    d
}

/// The open deliveries as the `deliveries` view and the attempts history
/// tell them, in the index's terms.
async fn from_the_view(setup: &Setup) -> Vec<OpenDelivery> {
    let rows = setup
        .query(
            "WITH history AS (
               SELECT delivery_id, max(attempt) AS last_attempt,
                      coalesce(max(attempt) FILTER (WHERE status = 'pending'), 0) AS reset
               FROM attempts GROUP BY delivery_id),
             since AS (
               SELECT a.delivery_id, min(a.attempt) AS first_attempt
               FROM attempts a JOIN history h ON a.delivery_id = h.delivery_id
               WHERE a.attempt > h.reset AND a.status <> 'pending'
               GROUP BY a.delivery_id)
             SELECT d.delivery_id, d.status, d.payload,
                    CAST(d.next_attempt_at AS BIGINT) AS next_us,
                    CAST(d.planned_at AS BIGINT) AS planned_us,
                    coalesce(h.last_attempt, 0) AS last_attempt,
                    coalesce(h.last_attempt, 0) - coalesce(h.reset, 0) AS tries,
                    CAST(f.attempted_at AS BIGINT) AS first_us
             FROM deliveries d
             LEFT JOIN history h ON d.delivery_id = h.delivery_id
             LEFT JOIN since s ON d.delivery_id = s.delivery_id
             LEFT JOIN attempts f ON f.delivery_id = s.delivery_id AND f.attempt = s.first_attempt
             WHERE d.status IN ('pending', 'failed', 'held')
             ORDER BY d.delivery_id",
        )
        .await;
    rows.iter()
        .map(|r| OpenDelivery {
            delivery_id: r["delivery_id"].as_str().unwrap().to_string(),
            status: r["status"].as_str().unwrap().to_string(),
            tries: r["tries"].as_u64().unwrap() as u32,
            last_attempt: r["last_attempt"].as_i64().unwrap(),
            // The view keeps a released delivery's `next_attempt_at` (its
            // pending row's); the index keeps one only for a failed one.
            next_attempt_at: match r["status"] == "failed" {
                true => r["next_us"].as_i64(),
                false => None,
            },
            first_try: match r["tries"].as_i64() {
                Some(0) => None,
                _ => r["first_us"].as_i64(),
            },
            planned_at: r["planned_us"].as_i64().unwrap(),
            payload: r["payload"].as_str().map(str::to_string),
        })
        .collect()
}

/// The index of `worker` equals the view; returns how many are open, per status.
async fn agree(setup: &Setup, worker: &Deliverer, when: &str) -> BTreeMap<String, usize> {
    let indexed = worker.open_deliveries(&setup.store, "shop").await.unwrap();
    let viewed = from_the_view(setup).await;
    assert_eq!(
        indexed.iter().map(|d| &d.delivery_id).collect::<Vec<_>>(),
        viewed.iter().map(|d| &d.delivery_id).collect::<Vec<_>>(),
        "{when}: the open set"
    );
    assert_eq!(indexed, viewed, "{when}: how they stand");
    let mut statuses = BTreeMap::new();
    for d in &indexed {
        *statuses.entry(d.status.clone()).or_default() += 1;
    }
    statuses
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_deliveries_index_agrees_with_the_deliveries_view_through_a_mixed_history() {
    let setup = Setup::new();
    let ok = Recorder::default();
    let ok_url = ok.start("127.0.0.1:0").await;
    let flaky = Recorder::default();
    let flaky_url = flaky.start("127.0.0.1:0").await;
    flaky.fail_first_try(503);
    let refusing = Recorder::default();
    let refusing_url = refusing.start("127.0.0.1:0").await;
    refusing.fail_next(400, None, 3);
    let down = format!("http://{}/hook", closed_port());

    let t0 = planned_now();
    let mut run1: Vec<DeliveryRecord> = Vec::new();
    run1.extend((0..9).map(|i| webhook(&format!("ok{i}"), &ok_url)));
    run1.extend((0..5).map(|i| webhook(&format!("flaky{i}"), &flaky_url)));
    run1.extend((0..4).map(|i| webhook(&format!("down{i}"), &down)));
    run1.extend((0..3).map(|i| webhook(&format!("bad{i}"), &refusing_url)));
    run1.extend((0..4).map(|i| in_flow(webhook(&format!("rel{i}"), &ok_url), "big", "held")));
    run1.extend((0..3).map(|i| in_flow(webhook(&format!("dis{i}"), &ok_url), "huge", "held")));
    run1.extend(
        (0..2).map(|i| in_flow(webhook(&format!("out{i}"), &ok_url), "reengage", "held_out")),
    );
    setup.plan("run-1", &run1, t0).await;

    let keeper = Keeper::new(t0);
    assert_eq!(
        agree(&setup, &keeper.worker, "planned").await,
        counts(&[("held", 7), ("pending", 21)])
    );

    keeper.deliver_at(&setup, t0).await;
    assert_eq!(
        agree(&setup, &keeper.worker, "first pass").await,
        counts(&[("failed", 9), ("held", 7)])
    );

    let t1 = t0 + Span::seconds(1);
    let run2: Vec<DeliveryRecord> = (0..6)
        .map(|i| {
            webhook(
                &format!("late{i}"),
                if i % 2 == 0 { &ok_url } else { &down },
            )
        })
        .collect();
    setup.plan("run-2", &run2, t1).await;
    decide_held(
        &setup.store,
        "shop",
        "run-1",
        Some("big"),
        Decision::Release,
        t1,
    )
    .await
    .unwrap();
    decide_held(
        &setup.store,
        "shop",
        "run-1",
        Some("huge"),
        Decision::Discard,
        t1,
    )
    .await
    .unwrap();
    assert_eq!(
        agree(
            &setup,
            &keeper.worker,
            "a second run, released and discarded"
        )
        .await,
        counts(&[("failed", 9), ("pending", 10)])
    );

    let t2 = t0 + Span::hours(1);
    keeper.deliver_at(&setup, t2).await;
    assert_eq!(
        agree(&setup, &keeper.worker, "retried an hour later").await,
        counts(&[("failed", 7)])
    );

    let dead: Vec<String> = vec!["bad0".into(), "bad1".into()];
    assert_eq!(redeliver(&setup.store, "shop", &dead, t2).await.unwrap(), 2);
    assert_eq!(
        agree(&setup, &keeper.worker, "dead ones redelivered").await,
        counts(&[("failed", 7), ("pending", 2)])
    );

    let t3 = t0 + Span::days(2);
    keeper.deliver_at(&setup, t3).await;
    assert_eq!(
        agree(&setup, &keeper.worker, "past the retry period").await,
        counts(&[])
    );
    let dead_rows = setup
        .query("SELECT count(*) AS n FROM deliveries WHERE status = 'dead'")
        .await;
    assert_eq!(dead_rows, [json!({"n": 8})], "the down ones and bad2");

    // A fresh process starts from the snapshot the keeper leaves; another
    // with no snapshot rebuilds: both hold what the view says.
    setup.plan("run-3", &[webhook("fresh0", &down)], t3).await;
    keeper.worker.leave(&setup.store).await;
    let snapshots = std::fs::read_dir(setup.project.path("store/shop/state/deliveries"))
        .unwrap()
        .count();
    assert!(snapshots >= 1, "the keeper saved its index");
    let fresh = Deliverer::new(DeliveryLimits::default());
    assert_eq!(
        agree(&setup, &fresh, "from a snapshot").await,
        counts(&[("pending", 1)])
    );
    std::fs::remove_dir_all(setup.project.path("store/shop/state/deliveries")).unwrap();
    let rebuilt = Deliverer::new(DeliveryLimits::default());
    assert_eq!(
        agree(&setup, &rebuilt, "rebuilt").await,
        counts(&[("pending", 1)])
    );
    let payload: Value = serde_json::from_str(
        rebuilt.open_deliveries(&setup.store, "shop").await.unwrap()[0]
            .payload
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["url"], json!(down), "what sending needs is held");
}
