//! Flows whose webhooks `tripwire run` delivers to a real receiver on
//! loopback: signatures fresh whatever the run's `--now`, and an action's
//! `rate_limit` spreading its requests.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use crate::deliver::{SIGNING_SECRET, Setup};
use crate::recorder::Recorder;

/// A trigger firing once per `cart` event, and `count` cart events sent a
/// year ago.
fn carts(setup: &Setup, count: usize) {
    let trigger = "-- backfill: all\n-- requires_identity: false\n\
         SELECT email, event_id FROM new_events WHERE event_name = 'cart'\n";
    let dir = setup.project.path("queries/triggers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("carts.sql"), trigger).unwrap();
    let sent = (Utc::now() - chrono::Duration::days(365)).to_rfc3339();
    let lines: String = (0..count)
        .map(|i| {
            format!(
                "{{\"name\":\"cart\",\"payload\":{{\"v\":{i}}},\"email\":\"c{i}@example.com\",\
                 \"event_id\":\"cart-{i}\",\"timestamp\":\"{sent}\"}}\n"
            )
        })
        .collect();
    let file = setup.project.path("carts.ndjson");
    std::fs::write(&file, lines).unwrap();
    setup.project.import(&[&file]);
}

/// A flow sending every cart to `url`, with extra action keys.
fn notify(setup: &Setup, url: &str, keys: &str) {
    let flow = format!(
        "trigger = \"carts\"\n[[branch]]\nactions = [\"hook\"]\n\
         [actions.hook]\ntype = \"webhook\"\nurl = \"{url}\"\ntimeout = \"5s\"\n{keys}"
    );
    let dir = setup.project.path("flows");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notify.toml"), flow).unwrap();
}

fn ok(setup: &Setup, args: &[&str]) -> String {
    let out = setup.run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "tripwire {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn statuses(setup: &Setup) -> Vec<Value> {
    setup
        .query(
            "SELECT status, count(*) AS n, max(attempts) AS most FROM deliveries GROUP BY status",
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_refusing_stale_signatures_accepts_every_delivery_after_a_run_pinned_a_year_back()
 {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    receiver.refuse_stale_signatures(SIGNING_SECRET, Duration::from_secs(60));
    receiver.fail_first_try(503);
    carts(&setup, 20);
    notify(&setup, &url, "");
    let year_ago = (Utc::now() - chrono::Duration::days(365)).to_rfc3339();
    let year_ahead = (Utc::now() + chrono::Duration::days(365)).to_rfc3339();

    let ran = ok(&setup, &["run", "--now", &year_ago]);
    // The retries are due by a clock a year ahead; they are still signed now.
    let retried = ok(&setup, &["deliver", "--now", &year_ahead]);

    assert!(ran.contains("shop: delivered 0, failed 20"), "{ran}");
    assert!(
        retried.contains("shop: delivered 20, failed 0"),
        "{retried}"
    );
    let requests = receiver.requests();
    let refused: Vec<u16> = requests
        .iter()
        .map(|r| r.status)
        .filter(|s| *s == 400)
        .collect();
    assert!(refused.is_empty(), "stale signatures: {refused:?}");
    assert_eq!(requests.len(), 40);
    assert_eq!(
        statuses(&setup).await,
        [serde_json::json!({"status": "delivered", "n": 20, "most": 2})]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_action_spreads_its_requests_and_delivers_them_all() {
    let setup = Setup::new();
    let receiver = Recorder::default();
    let url = receiver.start("127.0.0.1:0").await;
    carts(&setup, 100);
    notify(&setup, &url, "rate_limit = \"20/s\"\n");

    let ran = ok(&setup, &["run"]);

    assert!(ran.contains("shop: delivered 100, failed 0"), "{ran}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 100);
    assert_eq!(receiver.per_key().len(), 100);
    let first = requests.iter().map(|r| r.at).min().unwrap();
    let last = requests.iter().map(|r| r.at).max().unwrap();
    assert!(
        last - first >= Duration::from_millis(4_500),
        "100 requests at 20/s span 4.95 s at least; the receiver saw {:?}",
        last - first
    );
    assert_eq!(
        statuses(&setup).await,
        [serde_json::json!({"status": "delivered", "n": 100, "most": 1})]
    );
}

#[test]
fn a_bad_rate_limit_is_refused_with_the_action_and_the_key() {
    let setup = Setup::new();
    carts(&setup, 1);
    notify(
        &setup,
        "http://127.0.0.1:9/hook",
        "rate_limit = \"20/fortnight\"\n",
    );

    let out = setup.project.run(&["check"]);

    assert_eq!(out.status.code(), Some(2));
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("notify.toml:4: actions.hook: rate_limit: \"20/fortnight\": unknown unit"),
        "{said}"
    );
}
