//! Who else is delivering (docs/architecture.md "Deliveries"): every
//! worker delivering a workspace writes a small heartbeat object,
//! `<root>/<workspace>/state/replicas/<node>.json`, at most every
//! [`HEARTBEAT_EVERY`], and counts the heartbeats younger than
//! [`REPLICA_TTL`]. Each replica paces an action at its rate divided by
//! that count, so the replicas together stay near the rate: approximate,
//! because a replica that starts or stops is counted up to a TTL late, and
//! the split assumes replicas share the work evenly.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// A worker renews its heartbeat (and recounts the others') this often.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// A heartbeat younger than this is a live replica.
pub const REPLICA_TTL: Duration = Duration::from_secs(15);

/// A heartbeat older than this is deleted when seen (a replica long gone).
pub const STALE_HEARTBEAT: Duration = Duration::from_secs(24 * 60 * 60);

/// What a heartbeat object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    pub seen_at: DateTime<Utc>,
}

fn age(seen_at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - seen_at).to_std().unwrap_or(Duration::ZERO)
}

/// How many replicas share the work at `now`: the distinct nodes with a
/// heartbeat younger than [`REPLICA_TTL`], `me` always among them.
pub fn live_replicas(heartbeats: &[Heartbeat], me: &str, now: DateTime<Utc>) -> u32 {
    let mut nodes: Vec<&str> = heartbeats
        .iter()
        .filter(|h| h.node != me && age(h.seen_at, now) < REPLICA_TTL)
        .map(|h| h.node.as_str())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    u32::try_from(nodes.len() + 1).unwrap_or(u32::MAX)
}

/// One worker's view of a workspace's replicas.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: DateTime<Utc>,
    live: u32,
}

/// One worker's heartbeats and counts, per workspace.
#[derive(Debug, Default)]
pub struct Replicas {
    seen: HashMap<String, Seen>,
}

impl Replicas {
    /// The count from the last look at `workspace`, if it is recent enough
    /// at `now` (else it is time to beat and look again).
    pub fn known(&self, workspace: &str, now: DateTime<Utc>) -> Option<u32> {
        self.seen
            .get(workspace)
            .filter(|seen| age(seen.at, now) < HEARTBEAT_EVERY && seen.at <= now)
            .map(|seen| seen.live)
    }

    pub fn remember(&mut self, workspace: &str, now: DateTime<Utc>, live: u32) {
        self.seen
            .insert(workspace.to_string(), Seen { at: now, live });
    }

    /// The workspaces this worker announced itself in.
    pub fn workspaces(&self) -> Vec<String> {
        self.seen.keys().cloned().collect()
    }
}

fn object(node: &str) -> String {
    format!("{node}.json")
}

/// Writes `node`'s heartbeat in `workspace` at `now`, then counts the live
/// replicas (deleting heartbeats long stale).
pub async fn beat(
    store: &Store,
    workspace: &str,
    node: &str,
    now: DateTime<Utc>,
) -> Result<u32, StoreError> {
    let dir = store.state_dir(&format!("{workspace}/state/replicas"))?;
    let heartbeat = Heartbeat {
        node: node.to_string(),
        seen_at: now,
    };
    dir.write(&object(node), &heartbeat).await?;
    let mut heartbeats = Vec::new();
    for (name, _) in dir.list().await? {
        match dir.read::<Heartbeat>(&name).await {
            Ok(Some(h)) if age(h.seen_at, now) >= STALE_HEARTBEAT => {
                let _ = dir.delete(&name).await;
            }
            Ok(Some(h)) => heartbeats.push(h),
            Ok(None) | Err(_) => {}
        }
    }
    Ok(live_replicas(&heartbeats, node, now))
}

/// Removes `node`'s heartbeat from `workspace` (a worker that stops).
pub async fn leave(store: &Store, workspace: &str, node: &str) -> Result<(), StoreError> {
    let dir = store.state_dir(&format!("{workspace}/state/replicas"))?;
    dir.delete(&object(node)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn heartbeat(node: &str, seen_at: &str) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            seen_at: at(seen_at),
        }
    }

    #[test]
    fn replicas_with_a_recent_heartbeat_are_live() {
        let now = at("2026-01-01T00:01:00Z");
        let heartbeats = [
            heartbeat("me", "2026-01-01T00:00:00Z"),
            heartbeat("b", "2026-01-01T00:00:50Z"),
            heartbeat("c", "2026-01-01T00:00:45Z"),
            heartbeat("d", "2026-01-01T00:00:30Z"),
        ];
        assert_eq!(live_replicas(&heartbeats, "me", now), 2, "me and b");
        assert_eq!(live_replicas(&[], "me", now), 1);
    }

    #[test]
    fn a_count_is_kept_for_one_heartbeat_interval() {
        let mut replicas = Replicas::default();
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(replicas.known("shop", now), None);
        replicas.remember("shop", now, 3);
        assert_eq!(replicas.known("shop", at("2026-01-01T00:00:04Z")), Some(3));
        assert_eq!(replicas.known("shop", at("2026-01-01T00:00:05Z")), None);
        assert_eq!(replicas.known("other", now), None);
    }

    #[tokio::test]
    async fn two_workers_on_one_store_count_each_other_until_one_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(url::Url::from_directory_path(dir.path()).unwrap());
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(beat(&store, "shop", "a", now).await.unwrap(), 1);
        assert_eq!(beat(&store, "shop", "b", now).await.unwrap(), 2);
        assert_eq!(beat(&store, "other", "b", now).await.unwrap(), 1);
        leave(&store, "shop", "b").await.unwrap();
        assert_eq!(beat(&store, "shop", "a", now).await.unwrap(), 1);
        let next_day = at("2026-01-02T00:00:01Z");
        beat(&store, "shop", "b", now).await.unwrap();
        assert_eq!(beat(&store, "shop", "c", next_day).await.unwrap(), 1);
        let dir = store.state_dir("shop/state/replicas").unwrap();
        assert_eq!(
            dir.list().await.unwrap().len(),
            1,
            "stale heartbeats deleted"
        );
    }
}
