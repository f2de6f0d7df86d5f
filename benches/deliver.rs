//! `cargo bench --bench deliver`: plans 100k webhook deliveries in a fresh
//! store (ten trigger runs' ledger commits, through the library), then
//! delivers them all with the library's worker to a loopback receiver in
//! this process, and prints deliveries/s with every attempt recorded in the
//! attempts table. `TRIPWIRE_BENCH_DELIVERIES=N` changes the size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::State;
use axum::routing::post;
use chrono::Utc;
use serde_json::json;
use tripwire::config::Config;
use tripwire::deliver::{DeliveryLimits, deliver_due};
use tripwire::sql::{SessionSpec, run_read_only, workspace_session};
use tripwire::store::ledger::{DeliveryRecord, RunRecord, run_batch};
use tripwire::store::{Store, TableKind, table};

/// Planned deliveries are committed in this many trigger runs.
const RUNS: usize = 10;

#[tokio::main]
async fn main() {
    let deliveries: usize = std::env::var("TRIPWIRE_BENCH_DELIVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse(
        "storage = \"./store\"\n[[workspace]]\nid = \"shop\"\nsigning_secret = \"whsec_bench\"\n",
        "bench",
        dir.path(),
    )
    .expect("config");
    let store = Store::new(config.storage.clone());
    let received = Arc::new(AtomicU64::new(0));
    let url = receiver(received.clone()).await;

    let started = Instant::now();
    plan(&store, &url, deliveries).await;
    println!(
        "planned {deliveries} webhook deliveries in {:.2}s",
        started.elapsed().as_secs_f64()
    );

    let limits = DeliveryLimits::default();
    let started = Instant::now();
    let summary = deliver_due(&store, &config, "shop", Utc::now(), &limits)
        .await
        .expect("deliver");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.delivered as usize, deliveries, "{summary}");
    assert_eq!(received.load(Ordering::Relaxed) as usize, deliveries);
    let recorded = count_delivered(&store, &config).await;
    assert_eq!(recorded, deliveries, "one delivered attempt per delivery");
    println!(
        "deliver: {deliveries} webhooks in {seconds:.2}s = {:.0} deliveries/s \
         (batch {}, {} in flight, attempts recorded per batch)",
        deliveries as f64 / seconds,
        limits.batch,
        limits.concurrency
    );
}

/// A receiver that counts requests and answers 200; returns its hook URL.
async fn receiver(received: Arc<AtomicU64>) -> String {
    async fn answer(State(received): State<Arc<AtomicU64>>, _body: String) -> &'static str {
        received.fetch_add(1, Ordering::Relaxed);
        "ok"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    let app = axum::Router::new()
        .route("/hook", post(answer))
        .with_state(received);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

/// Commits `deliveries` planned webhooks in [`RUNS`] ledger commits.
async fn plan(store: &Store, url: &str, deliveries: usize) {
    let mut ledger = store
        .open_or_create("shop", TableKind::Ledger)
        .await
        .expect("ledger");
    let per_run = deliveries.div_ceil(RUNS);
    for run in 0..RUNS {
        let ids = (run * per_run)..((run + 1) * per_run).min(deliveries);
        let planned: Vec<DeliveryRecord> = ids.map(|i| webhook(run, i, url)).collect();
        let at = Utc::now().timestamp_micros();
        let record = RunRecord {
            run_id: format!("run-{run}"),
            trigger: "cart_abandoned".into(),
            from_version: run as i64 - 1,
            to_version: run as i64,
            started_at: at,
            finished_at: at,
            clock: at,
            matched: planned.len() as i64,
            resolved: planned.len() as i64,
            unresolved: 0,
            dropped: 0,
            error: None,
        };
        let batch = run_batch(&record, &[], &planned);
        table::append(&mut ledger, vec![batch], None)
            .await
            .expect("commit a run");
    }
}

fn webhook(run: usize, i: usize, url: &str) -> DeliveryRecord {
    let id = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes()));
    let email = format!("user{i}@example.com");
    let body = json!({
        "delivery_id": id, "workspace": "shop", "flow": "reengage",
        "trigger": "cart_abandoned", "run_id": format!("run-{run}"), "variant": "a", "branch": 0,
        "contact": {"email": email, "user_id": null, "client_id": null},
        "data": {"cart_value": 120.5},
    });
    DeliveryRecord {
        delivery_id: id,
        flow: "reengage".into(),
        action: "hook".into(),
        match_key: format!("email:{email}"),
        email: Some(email),
        user_id: None,
        client_id: None,
        variant: Some("a".into()),
        branch: Some(0),
        status: "pending".into(),
        reason: None,
        data: r#"{"cart_value":120.5}"#.into(),
        payload: Some(
            json!({"kind": "webhook", "url": url, "body": body.to_string(), "timeout_ms": 10_000})
                .to_string(),
        ),
    }
}

/// Deliveries the `deliveries` view shows as delivered.
async fn count_delivered(store: &Store, config: &Config) -> usize {
    let spec = SessionSpec {
        store,
        workspace: "shop",
        now: Utc::now(),
        identity_ttl: config.identity_ttl,
        events: None,
    };
    let ctx = workspace_session(&spec).await.expect("session");
    let batches = run_read_only(
        &ctx,
        "SELECT count(*) AS n FROM deliveries WHERE status = 'delivered' AND attempts = 1",
    )
    .await
    .expect("count");
    let column = batches[0].column(0);
    let counts = column
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("a count");
    counts.value(0) as usize
}
