//! The rows waiting for an identity that a process keeps between ticks
//! (`identity::waiting`) agree with a read of the whole ledger at every
//! step of a history: rows deferred by several triggers' runs, settled as
//! resolved or expired, the ledger compacted by another writer (followed:
//! it moves rows, it adds none), rows deleted by another writer (read
//! whole again), a second replica's commits (followed) and a log cleaned
//! up past what was kept (read whole again).

use std::collections::HashMap;
use std::process::Command;

use deltalake_core::DeltaTable;
use tripwire::identity::pending::open_all;
use tripwire::identity::waiting::{OpenRows, Waiting, WaitingCache};
use tripwire::store::commit::{Always, commit};
use tripwire::store::ledger::{PendingRecord, RunRecord, RunRows, Settled, run_batch};
use tripwire::store::{Store, TableKind};

const TRIGGERS: &[&str] = &["cart_abandoned", "deposit_started", "never_ran"];

fn run(trigger: &str, id: &str, clock: i64) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        trigger: trigger.into(),
        from_version: -1,
        to_version: 0,
        started_at: clock,
        finished_at: clock,
        clock,
        matched: 0,
        resolved: 0,
        unresolved: 0,
        dropped: 0,
        pending: 0,
        expired: 0,
        held: 0,
        error: None,
    }
}

fn pending(id: &str, client: &str) -> PendingRecord {
    PendingRecord {
        pending_id: id.into(),
        row: format!(r#"{{"client_id":"{client}"}}"#),
        wait_until: 1_800_000_000_000_000,
        email: None,
        user_id: None,
        client_id: Some(client.into()),
    }
}

/// Commits one run of `trigger` deferring `defer` and settling `settle`.
async fn commit_run(
    ledger: &mut DeltaTable,
    trigger: &str,
    clock: i64,
    defer: &[PendingRecord],
    settle: &[(String, Settled)],
) {
    let record = run(trigger, &format!("{trigger}-{clock}"), clock);
    let rows = RunRows {
        pending: defer,
        settled: settle,
        ..RunRows::default()
    };
    commit(ledger, &mut Always(run_batch(&record, &rows)))
        .await
        .unwrap();
}

/// The rows handed out, as plain records.
fn plain(open: HashMap<String, OpenRows>) -> HashMap<String, Vec<PendingRecord>> {
    open.into_iter()
        .map(|(t, rows)| (t, rows.iter().map(|r| r.as_ref().clone()).collect()))
        .collect()
}

/// Each trigger's open pending ids, in the order runs get them.
fn ids(open: &HashMap<String, OpenRows>) -> HashMap<String, Vec<String>> {
    open.iter()
        .map(|(t, rows)| {
            (
                t.clone(),
                rows.iter().map(|r| r.pending_id.clone()).collect(),
            )
        })
        .collect()
}

/// The kept rows caught up to `ledger` (`None`: they had to be read whole),
/// checked equal to a read of the whole ledger and to what the cache hands out.
async fn agree(kept: Waiting, ledger: &DeltaTable, cache: &WaitingCache) -> Option<Waiting> {
    let whole = open_all(ledger, TRIGGERS).await.unwrap();
    let mut caught_up = kept.caught_up(ledger).await.unwrap();
    if let Some(caught_up) = &mut caught_up {
        assert_eq!(plain(caught_up.of(TRIGGERS)), whole, "followed = whole");
    }
    assert_eq!(
        plain(cache.open(ledger, TRIGGERS).await.unwrap()),
        whole,
        "cache = whole"
    );
    assert_eq!(
        plain(Waiting::read(ledger).await.unwrap().of(TRIGGERS)),
        whole
    );
    caught_up
}

fn python(table: &str, script: &str) {
    let out = Command::new("python3")
        .args(["-c", script, table])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed (CI installs `deltalake`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn kept_waiting_rows_agree_with_the_whole_ledger_through_settlements_compaction_and_deletes()
{
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(url::Url::from_directory_path(dir.path()).unwrap());
    let mut ledger = store
        .open_or_create("shop", TableKind::Ledger)
        .await
        .unwrap();
    let cache = WaitingCache::default();
    let settled = |id: &str, how| vec![(id.to_string(), how)];

    commit_run(
        &mut ledger,
        "cart_abandoned",
        100,
        &[pending("p1", "a"), pending("p2", "b")],
        &[],
    )
    .await;
    let mut kept = Waiting::read(&ledger).await.unwrap();
    assert_eq!(
        ids(&kept.of(TRIGGERS)),
        HashMap::from([("cart_abandoned".to_string(), vec!["p1".into(), "p2".into()])])
    );

    // Later runs defer more (an older clock sorts first) and settle some.
    commit_run(
        &mut ledger,
        "deposit_started",
        50,
        &[pending("q1", "c")],
        &[],
    )
    .await;
    commit_run(
        &mut ledger,
        "cart_abandoned",
        200,
        &[pending("p0", "d")],
        &settled("p1", Settled::Resolved),
    )
    .await;
    commit_run(
        &mut ledger,
        "cart_abandoned",
        90,
        &[pending("p9", "e")],
        &[],
    )
    .await;
    let mut kept = agree(kept, &ledger, &cache)
        .await
        .expect("appends are followed");
    assert_eq!(
        ids(&kept.of(TRIGGERS))["cart_abandoned"],
        ["p9", "p2", "p0"],
        "oldest clock first"
    );

    // Nothing new: nothing to read.
    let kept = agree(kept, &ledger, &cache).await.expect("nothing new");

    // A row deferred and settled in the same stretch of commits never shows.
    commit_run(
        &mut ledger,
        "deposit_started",
        300,
        &[pending("q2", "f")],
        &[],
    )
    .await;
    commit_run(
        &mut ledger,
        "deposit_started",
        400,
        &[],
        &[
            settled("q2", Settled::Expired),
            settled("q1", Settled::Resolved),
        ]
        .concat(),
    )
    .await;
    let mut kept = agree(kept, &ledger, &cache).await.expect("followed");
    assert!(!kept.of(TRIGGERS).contains_key("deposit_started"));

    // Another writer compacts the ledger: rows move, none is new.
    let table = dir.path().join("shop/ledger");
    let table = table.to_str().unwrap();
    python(
        table,
        "import sys\nfrom deltalake import DeltaTable\nDeltaTable(sys.argv[1]).optimize.compact()",
    );
    ledger.update_state().await.unwrap();
    let kept = agree(kept, &ledger, &cache)
        .await
        .expect("a compaction is followed");

    // Another writer deletes rows: what was kept may be gone, read it whole.
    python(
        table,
        "import sys\nfrom deltalake import DeltaTable\nDeltaTable(sys.argv[1]).delete(\"pending_id = 'p2'\")",
    );
    ledger.update_state().await.unwrap();
    assert!(
        agree(kept, &ledger, &cache).await.is_none(),
        "a delete is not followed"
    );
    assert_eq!(
        ids(&cache.open(&ledger, TRIGGERS).await.unwrap())["cart_abandoned"],
        ["p9", "p0"]
    );

    // A second replica commits through its own handle: followed like ours.
    let kept = Waiting::read(&ledger).await.unwrap();
    let mut replica = store
        .open_or_create("shop", TableKind::Ledger)
        .await
        .unwrap();
    commit_run(&mut replica, "never_ran", 500, &[pending("r1", "g")], &[]).await;
    ledger.update_state().await.unwrap();
    let mut kept = agree(kept, &ledger, &cache)
        .await
        .expect("another replica's commit is followed");
    assert_eq!(ids(&kept.of(TRIGGERS))["never_ran"], ["r1"]);

    // Another writer cleans up the log past what was kept: read it whole.
    commit_run(
        &mut ledger,
        "never_ran",
        600,
        &[],
        &settled("r1", Settled::Resolved),
    )
    .await;
    python(
        table,
        "import sys\nfrom deltalake import DeltaTable\n\
         t = DeltaTable(sys.argv[1])\n\
         t.alter.set_table_properties({'delta.logRetentionDuration': 'interval 0 seconds'})\n\
         t = DeltaTable(sys.argv[1])\nt.create_checkpoint()\nt.cleanup_metadata()",
    );
    ledger.update_state().await.unwrap();
    assert!(
        agree(kept, &ledger, &cache).await.is_none(),
        "commits cleaned from the log are not followed"
    );
    assert!(
        !cache
            .open(&ledger, TRIGGERS)
            .await
            .unwrap()
            .contains_key("never_ran")
    );
}
