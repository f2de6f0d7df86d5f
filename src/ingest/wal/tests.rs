//! The write-ahead log's behaviour on a real directory: order, rotation,
//! sealing, group commit, back-pressure, shutdown, recovery after a crash.

use std::fs::{self, OpenOptions};
use std::io::Write;

use tempfile::TempDir;

use super::format::{check_records, segment_path};
use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn config(dir: &TempDir) -> WalConfig {
    WalConfig {
        dir: dir.path().join("wal"),
        segment_bytes: 1 << 20,
        segment_age: HOUR,
        queue: 16,
        queue_bytes: 1 << 20,
        max_bytes: u64::MAX,
    }
}

fn records(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

/// Every sealed segment's number and records, oldest first.
fn sealed_contents(wal: &Wal) -> Vec<(u64, Vec<Vec<u8>>)> {
    let read = |s: Segment| (s.number, s.read().expect("read segment"));
    wal.sealed().into_iter().map(read).collect()
}

fn only_segment_path(wal: &Wal) -> PathBuf {
    let sealed = wal.sealed();
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    sealed[0].path.clone()
}

#[tokio::test]
async fn appended_records_read_back_in_order() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(config(&dir)).unwrap();
    wal.append(records(&["a", "bb"])).await.unwrap();
    wal.append(records(&["ccc"])).await.unwrap();
    assert!(
        wal.sealed().is_empty(),
        "the open segment is not sealed yet"
    );
    wal.seal(true).await.unwrap();
    assert_eq!(
        sealed_contents(&wal),
        vec![(1, records(&["a", "bb", "ccc"]))]
    );
    let stats = wal.stats();
    assert_eq!((stats.appends, stats.records), (2, 3));
    assert_eq!(stats.bytes_written, 3 * 8 + 6);
    assert_eq!(stats.bytes_pending, stats.bytes_written);
    let path = only_segment_path(&wal);
    assert_eq!(fs::metadata(path).unwrap().len(), stats.bytes_written);
}

#[tokio::test]
async fn a_crash_leaves_the_open_segment_sealed_on_reopen() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(config(&dir)).unwrap();
    let node = wal.node_id().to_string();
    wal.append(records(&["kept", "too"])).await.unwrap();
    drop(wal); // no close, no seal
    let wal = Wal::open(config(&dir)).unwrap();
    assert_eq!(wal.node_id(), node);
    assert_eq!(sealed_contents(&wal), vec![(1, records(&["kept", "too"]))]);
    assert_eq!(wal.stats().bytes_pending, 2 * 8 + 7);
    wal.append(records(&["next"])).await.unwrap();
    wal.seal(true).await.unwrap();
    let numbers: Vec<u64> = wal.sealed().iter().map(|s| s.number).collect();
    assert_eq!(numbers, [1, 2]);
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(config(&dir)).unwrap();
    for text in ["one", "two", "three"] {
        wal.append(records(&[text])).await.unwrap();
    }
    drop(wal);
    let path = segment_path(&config(&dir).dir, 1);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len((3 * 8 + 11 - 2) as u64).unwrap();
    drop(file);
    let wal = Wal::open(config(&dir)).unwrap();
    assert_eq!(sealed_contents(&wal), vec![(1, records(&["one", "two"]))]);
    assert_eq!(fs::metadata(&path).unwrap().len(), 2 * 8 + 6);
}

#[tokio::test]
async fn garbage_after_the_last_record_is_cut_off() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(config(&dir)).unwrap();
    wal.append(records(&["one", "two"])).await.unwrap();
    drop(wal);
    let path = segment_path(&config(&dir).dir, 1);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&[7, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
    drop(file);
    let wal = Wal::open(config(&dir)).unwrap();
    assert_eq!(sealed_contents(&wal), vec![(1, records(&["one", "two"]))]);
    assert_eq!(fs::metadata(&path).unwrap().len(), 2 * 8 + 6);
}

#[tokio::test]
async fn segments_rotate_by_size_in_order() {
    let dir = TempDir::new().unwrap();
    let config = WalConfig {
        segment_bytes: 2 * (8 + 4),
        ..config(&dir)
    };
    let wal = Wal::open(config).unwrap();
    let texts: Vec<String> = (0..6).map(|i| format!("rec{i}")).collect();
    for text in &texts {
        wal.append(records(&[text.as_str()])).await.unwrap();
    }
    let contents = sealed_contents(&wal);
    let numbers: Vec<u64> = contents.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [1, 2, 3]);
    let all: Vec<Vec<u8>> = contents.into_iter().flat_map(|(_, r)| r).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_eq!(all, records(&texts));
}

#[tokio::test]
async fn seal_waits_for_age_unless_forced() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(config(&dir)).unwrap();
    wal.seal(true).await.unwrap();
    assert!(wal.sealed().is_empty(), "nothing to seal");
    wal.append(records(&["young"])).await.unwrap();
    wal.seal(false).await.unwrap();
    assert!(wal.sealed().is_empty(), "younger than segment_age");
    wal.seal(true).await.unwrap();
    assert_eq!(sealed_contents(&wal), vec![(1, records(&["young"]))]);
    drop(wal);

    let config = WalConfig {
        segment_age: Duration::ZERO,
        ..config(&dir)
    };
    let wal = Wal::open(config).unwrap();
    wal.append(records(&["old enough"])).await.unwrap();
    wal.seal(false).await.unwrap();
    assert_eq!(wal.sealed().len(), 2);
}

#[tokio::test]
async fn numbers_continue_after_every_segment_was_removed() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(config(&dir)).unwrap();
    for text in ["a", "b"] {
        wal.append(records(&[text])).await.unwrap();
        wal.seal(true).await.unwrap();
    }
    for segment in wal.sealed() {
        segment.remove().unwrap();
    }
    assert_eq!(wal.stats().bytes_pending, 0);
    wal.close().await.unwrap();
    drop(wal);
    let wal = Wal::open(config(&dir)).unwrap();
    assert!(wal.sealed().is_empty());
    wal.append(records(&["c"])).await.unwrap();
    wal.seal(true).await.unwrap();
    assert_eq!(sealed_contents(&wal), vec![(3, records(&["c"]))]);
}

#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(WalConfig {
        queue: 2,
        queue_bytes: 1 << 20,
        max_bytes: u64::MAX,
        ..config(&dir)
    })
    .unwrap();
    let release = wal.hold().await;
    let first = wal.enqueue(records(&["1"])).unwrap();
    let second = wal.enqueue(records(&["2"])).unwrap();
    assert_eq!(wal.stats().queued, 2);
    let refused = wal.append(records(&["3"])).await;
    assert!(matches!(refused, Err(WalError::Full)), "{refused:?}");
    drop(release);
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    wal.append(records(&["4"])).await.unwrap();
    assert_eq!(wal.stats().appends, 3);
}

#[tokio::test]
async fn queued_appends_share_one_fsync() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(config(&dir)).unwrap();
    let release = wal.hold().await;
    let texts: Vec<String> = (0..10).map(|i| format!("request {i}")).collect();
    let answers: Vec<_> = texts
        .iter()
        .map(|t| wal.enqueue(records(&[t.as_str()])).unwrap())
        .collect();
    drop(release);
    for answer in answers {
        answer.await.unwrap().unwrap();
    }
    let stats = wal.stats();
    assert_eq!((stats.appends, stats.fsyncs), (10, 1));
    wal.seal(true).await.unwrap();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_eq!(sealed_contents(&wal), vec![(1, records(&texts))]);
}

#[tokio::test]
async fn close_writes_what_was_queued_then_refuses() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(config(&dir)).unwrap();
    let release = wal.hold().await;
    let answers: Vec<_> = ["x", "y"]
        .into_iter()
        .map(|t| wal.enqueue(records(&[t])).unwrap())
        .collect();
    drop(release);
    wal.close().await.unwrap();
    for answer in answers {
        answer.await.unwrap().unwrap();
    }
    assert_eq!(sealed_contents(&wal), vec![(1, records(&["x", "y"]))]);
    let refused = wal.append(records(&["late"])).await;
    assert!(matches!(refused, Err(WalError::Closed)), "{refused:?}");
    wal.close().await.unwrap();
    let reopened = Wal::open(config(&dir)).unwrap();
    assert_eq!(sealed_contents(&reopened), vec![(1, records(&["x", "y"]))]);
}

#[tokio::test]
async fn a_second_open_of_the_directory_is_refused() {
    let dir = TempDir::new().unwrap();
    let _wal = Wal::open(config(&dir)).unwrap();
    let second = Wal::open(config(&dir));
    assert!(
        matches!(second, Err(WalError::Locked(_))),
        "{:?}",
        second.err()
    );
}

#[tokio::test]
async fn empty_and_oversized_records_are_refused() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(config(&dir)).unwrap();
    let empty = wal.append(vec![Vec::new()]).await;
    assert!(matches!(empty, Err(WalError::Record(0))), "{empty:?}");
    let big = vec![vec![0; MAX_RECORD_BYTES + 1]];
    assert!(matches!(check_records(&big), Err(WalError::Record(_))));
    wal.append(Vec::new()).await.unwrap();
    assert_eq!(wal.stats().appends, 0);
}

#[tokio::test]
async fn a_failed_fsync_is_refused_and_the_next_append_goes_to_a_fresh_segment() {
    let files = super::faulty::FaultyFiles::new(7);
    let config = WalConfig {
        dir: PathBuf::from("/node/wal"),
        ..config(&TempDir::new().unwrap())
    };
    let wal = Wal::open_on(config, Arc::new(files.clone())).unwrap();
    wal.append(records(&["kept"])).await.unwrap();
    files.fail_next_syncs(1);
    let refused = wal.append(records(&["refused"])).await;
    assert!(matches!(refused, Err(WalError::Failed(_))), "{refused:?}");
    assert!(wal.failure().is_some_and(|r| r.contains("sync")));
    assert_eq!(wal.stats().errors, 1);
    // Sealed at its durable length: the refused record is not read back.
    assert_eq!(sealed_contents(&wal), vec![(1, records(&["kept"]))]);
    wal.append(records(&["after"])).await.unwrap();
    assert_eq!(wal.failure(), None, "a fresh segment took the write");
    wal.seal(true).await.unwrap();
    assert_eq!(
        sealed_contents(&wal),
        vec![(1, records(&["kept"])), (2, records(&["after"]))]
    );
}

#[tokio::test]
async fn a_failing_log_recovers_on_a_seal_tick_without_appends() {
    let files = super::faulty::FaultyFiles::new(7);
    let config = WalConfig {
        dir: PathBuf::from("/node/wal"),
        ..config(&TempDir::new().unwrap())
    };
    let wal = Wal::open_on(config, Arc::new(files.clone())).unwrap();
    files.fail_next_syncs(1);
    assert!(wal.append(records(&["refused"])).await.is_err());
    assert!(wal.failure().is_some());
    wal.seal(false).await.unwrap();
    assert_eq!(wal.failure(), None, "a fresh segment could be created");
    assert_eq!(wal.stats().bytes_pending, 0, "nothing was acknowledged");
}

#[tokio::test]
async fn the_queue_is_bounded_in_bytes() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(WalConfig {
        queue_bytes: 100,
        ..config(&dir)
    })
    .unwrap();
    let release = wal.hold().await;
    let big = vec![vec![1u8; 80]];
    let first = wal.enqueue(big.clone()).unwrap();
    assert_eq!(wal.stats().queued_bytes, 88);
    assert!(matches!(wal.enqueue(big.clone()), Err(WalError::Full)));
    assert!(wal.enqueue(records(&["tiny"])).is_ok(), "room for 12 bytes");
    drop(release);
    first.await.unwrap().unwrap();
    wal.close().await.unwrap();
    assert_eq!(wal.stats().queued_bytes, 0);
    let other = TempDir::new().unwrap();
    let alone = Wal::open(WalConfig {
        queue_bytes: 10,
        ..config(&other)
    })
    .unwrap();
    alone
        .append(big)
        .await
        .expect("one append always fits an empty queue");
}

#[tokio::test]
async fn the_log_is_bounded_in_bytes_until_the_flusher_removes_segments() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::open(WalConfig {
        max_bytes: 100,
        ..config(&dir)
    })
    .unwrap();
    let big = vec![vec![1u8; 80]];
    wal.append(big.clone())
        .await
        .expect("one append always fits an empty log");
    assert!(
        wal.append(records(&["tiny"])).await.is_ok(),
        "88 + 12 bytes"
    );
    let refused = wal.append(records(&["x"])).await;
    assert!(
        matches!(
            refused,
            Err(WalError::Backlog {
                pending: 100,
                limit: 100
            })
        ),
        "{refused:?}"
    );
    assert!(wal.backlogged());
    assert_eq!(wal.stats().bytes_pending, 100, "nothing more was written");
    wal.seal(true).await.unwrap();
    assert!(wal.backlogged(), "sealing frees nothing");
    for segment in wal.sealed() {
        segment.remove().unwrap();
    }
    assert!(!wal.backlogged());
    wal.append(big).await.expect("room again");
}
