//! A store written by an earlier tripwire (`tests/fixtures/v1-store`, made
//! by the commit before the ledger's `kind` layout) opens and keeps working:
//! its ledger is rewritten once, with the same runs, matches, deliveries and
//! cursors, and the next run starts where the old one stopped.

use std::path::Path;

use crate::project::Project;

/// A project with the repository's example triggers and flows over a copy
/// of the old store.
fn old_store_project() -> Project {
    let project = Project::with_config("storage = \"./store\"\n[[workspace]]\nid = \"shop\"\n");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(
        &repo.join("tests/fixtures/v1-store"),
        &project.path("store"),
    );
    copy_dir(&repo.join("queries"), &project.path("queries"));
    copy_dir(&repo.join("flows"), &project.path("flows"));
    project
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        match entry.file_type().unwrap().is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
}

#[test]
fn an_old_ledger_keeps_its_runs_matches_deliveries_and_cursors() {
    let project = old_store_project();
    assert_eq!(project.number("SELECT count(*) FROM events"), 606.0);
    assert_eq!(project.number("SELECT count(*) FROM quarantine"), 1.0);
    assert_eq!(project.number("SELECT count(*) FROM runs"), 8.0);
    let per_trigger = project.query(
        "SELECT trigger, count(*) AS n, count(event_id) AS by_event, \
                count(*) FILTER (WHERE contact LIKE 'email:%' OR contact LIKE 'user_id:%' \
                                  OR contact LIKE 'client_id:%') AS keyed \
         FROM matches GROUP BY trigger ORDER BY trigger",
    );
    let counts: Vec<(String, u64, u64, u64)> = per_trigger
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap();
            (
                r["trigger"].as_str().unwrap().into(),
                n("n"),
                n("by_event"),
                n("keyed"),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("cart_abandoned".into(), 17, 0, 17),
            ("deposit_started".into(), 24, 24, 24),
            ("sku_reorder".into(), 25, 0, 25),
            ("vip_cart_abandoned".into(), 6, 0, 6),
        ]
    );
    let statuses = project.query(
        "SELECT status, count(*) AS n, count(email) AS with_email FROM deliveries \
         GROUP BY status ORDER BY status",
    );
    let statuses: Vec<(String, u64, u64)> = statuses
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap().into(),
                r["n"].as_u64().unwrap(),
                r["with_email"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("delivered".into(), 20, 20),
            ("filtered".into(), 1, 1),
            ("held_out".into(), 3, 3)
        ]
    );
    // The cursors survived the rewrite, and every old row was stamped with
    // the version that added it: the next runs read the versions the
    // upgrade itself committed (no data), and nothing re-fires.
    let quiet = project.ok(&["run", "--now", "2026-11-05T00:00:00Z"]);
    assert_eq!(quiet.matches(": 0 rows,").count(), 4, "{quiet}");
    assert_eq!(quiet.matches("versions (2, ").count(), 4, "{quiet}");
    assert_eq!(project.number("SELECT count(*) FROM matches"), 72.0);
    let unstamped = project.number("SELECT count(*) FROM events WHERE commit_version IS NULL");
    assert_eq!(unstamped, 0.0);
    // 600 imported at version 1, 6 emitted at version 2, as the old log says.
    let stamps =
        project.query("SELECT commit_version, count(*) AS n FROM events GROUP BY 1 ORDER BY 1");
    assert_eq!(
        stamps,
        [
            serde_json::json!({"commit_version": 1, "n": 600}),
            serde_json::json!({"commit_version": 2, "n": 6}),
        ]
    );
}

#[test]
fn the_next_run_of_an_old_store_reads_only_what_arrived_since() {
    let project = old_store_project();
    let newer = project.path("newer.ndjson");
    std::fs::write(
        &newer,
        "{\"name\": \"deposit_started\", \"payload\": {\"amount\": 5}, \"email\": \"new@example.com\", \"event_id\": \"after-upgrade\"}\n",
    )
    .unwrap();
    project.import(&[&newer]);
    let out = project.ok(&["run", "deposit_started", "--now", "2026-11-05T00:00:00Z"]);
    assert!(
        out.contains("versions (2, ") && out.contains("]: 1 rows"),
        "{out}"
    );
    let latest = project.query(
        "SELECT contact, event_id FROM matches WHERE trigger = 'deposit_started' \
         AND event_id = 'after-upgrade'",
    );
    assert_eq!(latest.len(), 1, "{latest:?}");
    assert_eq!(latest[0]["contact"], "email:new@example.com");
}
