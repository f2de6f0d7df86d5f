//! Two `tripwire serve` replicas (real child processes, each with its own
//! config and write-ahead log) on one storage and one loopback receiver:
//! each delivery is sent by one of them, and a replica killed with `kill -9`
//! mid-batch has its deliveries taken over by the other once its claims
//! expire, with the same `Idempotency-Key`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tripwire::deliver::CLAIM_MARGIN;
use tripwire::store::ledger::DeliveryRecord;

use crate::deliver::{SIGNING_SECRET, Setup, planned_now, webhook};
use crate::project::SECRET;
use crate::recorder::Recorder;
use crate::server::{PATIENCE, Server};

/// A config for replica `name`: the project's storage, its own WAL and port.
fn replica_config(setup: &Setup, name: &str) -> PathBuf {
    let path = setup.project.path(&format!("{name}.toml"));
    let text = format!(
        "storage = \"./store\"\nlisten = \"127.0.0.1:0\"\n\
         [[workspace]]\nid = \"shop\"\nsecret = \"{SECRET}\"\nsigning_secret = \"{SIGNING_SECRET}\"\n\
         [ingest]\nwal_dir = \"./wal-{name}\"\nflush_age = \"200ms\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts replica `name`, with extra environment variables.
fn replica(setup: &Setup, name: &str, env: &[(&str, &std::ffi::OsStr)]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tripwire"));
    command
        .args(["serve", "--config"])
        .arg(replica_config(setup, name))
        .current_dir(setup.project.dir.path())
        .envs(env.iter().copied());
    tokio::task::block_in_place(|| Server::spawn(command))
}

/// Polls the deliveries until `n` are delivered.
async fn wait_until_delivered(setup: &Setup, n: usize, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let rows = setup
            .query("SELECT count(*) AS n FROM deliveries WHERE status = 'delivered'")
            .await;
        if rows[0]["n"] == json!(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited {patience:?} for {n} delivered: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each delivery's recorded history: delivered once, tried once.
async fn assert_recorded_once(setup: &Setup, n: usize) {
    let rows: Vec<Value> = setup
        .query(
            "SELECT count(*) AS n, count(DISTINCT delivery_id) AS ids FROM attempts
             WHERE status = 'delivered'",
        )
        .await;
    assert_eq!(rows, [json!({"n": n, "ids": n})]);
    let statuses = setup
        .query(
            "SELECT status, count(*) AS n, max(attempts) AS most FROM deliveries GROUP BY status",
        )
        .await;
    assert_eq!(
        statuses,
        [json!({"status": "delivered", "n": n, "most": 1})]
    );
}

fn hooks(prefix: &str, n: usize, url: &str) -> Vec<DeliveryRecord> {
    (0..n)
        .map(|i| webhook(&format!("{prefix}{i:03}"), url))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_storage_send_each_of_400_deliveries_once() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    // Slow answers keep both replicas' batches in flight together.
    receiver.delay(Duration::from_millis(200));
    let a = replica(&setup, "a", &[]);
    let b = replica(&setup, "b", &[]);

    setup
        .plan("run-1", &hooks("r", 400, &url), planned_now())
        .await;
    wait_until_delivered(&setup, 400, PATIENCE).await;

    let per_key = receiver.per_key();
    assert_eq!(per_key.len(), 400, "every delivery reached the receiver");
    assert_eq!(
        receiver.requests().len(),
        400,
        "none was sent twice: {} were",
        per_key.values().filter(|n| **n > 1).count()
    );
    assert_recorded_once(&setup, 400).await;
    assert!(tokio::task::block_in_place(|| a.stop()).success());
    assert!(tokio::task::block_in_place(|| b.stop()).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_batch_has_its_deliveries_retried_by_the_other_with_the_same_key() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    let pause = tempfile::tempdir().unwrap();
    let doomed = replica(
        &setup,
        "a",
        &[("TRIPWIRE_PAUSE_BEFORE_RECORD", pause.path().as_os_str())],
    );
    setup
        .plan("run-1", &hooks("k", 50, &url), planned_now())
        .await;
    let deadline = Instant::now() + PATIENCE;
    while !pause.path().join("paused").exists() {
        assert!(Instant::now() < deadline, "replica a never paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_before = receiver.per_key();
    assert_eq!(sent_before.len(), 50, "a sent its batch, recorded nothing");

    let survivor = replica(&setup, "b", &[]);
    tokio::task::block_in_place(|| doomed.crash());
    wait_until_delivered(&setup, 50, CLAIM_MARGIN + PATIENCE).await;

    let per_key = receiver.per_key();
    assert_eq!(per_key.len(), 50);
    assert!(
        per_key.values().all(|n| *n == 2),
        "each sent by a, then once more by b with the same key: {per_key:?}"
    );
    assert_recorded_once(&setup, 50).await;
    assert!(tokio::task::block_in_place(|| survivor.stop()).success());
}

/// The heartbeats in the workspace: node → when it was last seen.
fn heartbeats(setup: &Setup) -> HashMap<String, DateTime<Utc>> {
    let dir = setup.project.path("store/shop/state/replicas");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|text| serde_json::from_str::<Value>(&text).ok())
        .filter_map(|h| {
            let seen = h["seen_at"].as_str()?.parse().ok()?;
            Some((h["node"].as_str()?.to_string(), seen))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_an_actions_rate_limit() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    let a = replica(&setup, "a", &[]);
    let b = replica(&setup, "b", &[]);
    // A ledger to deliver from; both announce themselves, then each looks
    // again: each counts two replicas.
    setup.plan("run-0", &[], planned_now()).await;
    let deadline = Instant::now() + PATIENCE;
    let both = loop {
        if heartbeats(&setup).len() == 2 {
            break Utc::now();
        }
        assert!(Instant::now() < deadline, "no two heartbeats");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    while !heartbeats(&setup).values().all(|seen| *seen > both) {
        assert!(Instant::now() < deadline, "the replicas never beat again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paced: Vec<DeliveryRecord> = hooks("q", 40, &url)
        .into_iter()
        .map(|mut d| {
            let mut payload: Value = serde_json::from_str(d.payload.as_deref().unwrap()).unwrap();
            payload["rate_limit"] = json!("4/s");
            d.payload = Some(payload.to_string());
            d
        })
        .collect();

    setup.plan("run-1", &paced, planned_now()).await;
    wait_until_delivered(&setup, 40, PATIENCE).await;

    let requests = receiver.requests();
    assert_eq!(requests.len(), 40, "each sent once");
    let first = requests.iter().map(|r| r.at).min().unwrap();
    let last = requests.iter().map(|r| r.at).max().unwrap();
    // Each replica paces at 2/s; one of them sends 20 or more: 9.5 s.
    assert!(
        last - first >= Duration::from_secs(9),
        "two replicas splitting 4/s: 40 requests span 9.5 s at least, not {:?}",
        last - first
    );
    assert!(tokio::task::block_in_place(|| a.stop()).success());
    assert!(tokio::task::block_in_place(|| b.stop()).success());
}
