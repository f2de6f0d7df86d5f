//! Idempotent retries (docs/reference.md "Ingest API"): the `event_id`s /
//! `messageId`s a workspace received within the dedupe window, so a repeated
//! id is stored once.
//!
//! The index is rebuilt at startup from the events table (after the WAL has
//! been replayed into it) and fed by every acknowledged request. Its memory
//! is bounded in bytes (`[ingest] max_dedupe_bytes`), whatever the ids sent:
//! each (workspace, id) is kept as its 128-bit xxh3 digest, so a 32 KB id
//! costs what a 3-byte one does. Two different ids share a digest with odds
//! of about n²/2¹²⁹ for n ids: never, in practice. The digests live in
//! [`SHARDS`] maps, each allocated once at its full size, so a request's
//! lock covers one shard and never a resize; past the bound the oldest ids
//! are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use xxhash_rust::xxh3::Xxh3;

use crate::digest_map::DigestMap;

/// Independent maps, each behind its own lock.
pub const SHARDS: usize = 16;

/// A (workspace, id) pair's digest, in two words (a `u128` would be aligned
/// to 16 bytes and waste 8 per entry).
type Digest = (u64, u64);

/// Bytes one slot of a shard's map takes: digest and time, plus the
/// table's control byte.
const MAP_SLOT_BYTES: usize = std::mem::size_of::<(Digest, i64)>() + 1;
/// Bytes one entry of a shard's arrival queue takes.
const QUEUE_SLOT_BYTES: usize = std::mem::size_of::<(i64, Digest)>();

/// Ids seen per workspace, with when they were received (microseconds).
#[derive(Debug)]
pub struct Dedupe {
    window_micros: i64,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Debug)]
struct Shard {
    /// The most entries the map and the queue hold. The queue is allocated
    /// for exactly this many, the map for twice as many: a hash table kept
    /// at most half full cleans up after removals in place instead of
    /// growing, so neither ever reallocates.
    capacity: usize,
    received: DigestMap<Digest, i64>,
    /// Arrival order, for expiry: (received_at, digest).
    order: VecDeque<(i64, Digest)>,
}

impl Dedupe {
    /// An empty index taking at most `max_bytes` once full.
    pub fn new(window: std::time::Duration, max_bytes: usize) -> Dedupe {
        let capacity = shard_capacity(max_bytes / SHARDS);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    capacity,
                    received: HashMap::with_capacity_and_hasher(2 * capacity, Default::default()),
                    order: VecDeque::with_capacity(capacity),
                })
            })
            .collect();
        Dedupe {
            window_micros: i64::try_from(window.as_micros()).unwrap_or(i64::MAX),
            shards,
        }
    }

    /// The most ids remembered at once.
    pub fn capacity(&self) -> usize {
        self.shards.len() * self.shard(0).capacity
    }

    /// True when `id` was not received by `workspace` within the window
    /// before `now`; it is then remembered as received at `now`.
    pub fn first_time(&self, workspace: &str, id: &str, now: i64) -> bool {
        let digest = digest(workspace, id);
        let mut shard = self.shard_of(digest);
        shard.expire(now.saturating_sub(self.window_micros));
        if shard.received.contains_key(&digest) {
            return false;
        }
        shard.remember(digest, now);
        true
    }

    /// Remembers an id stored earlier (at startup, from the table).
    pub fn insert(&self, workspace: &str, id: &str, received_at: i64) {
        let digest = digest(workspace, id);
        let mut shard = self.shard_of(digest);
        if !shard.received.contains_key(&digest) {
            shard.remember(digest, received_at);
        }
    }

    /// Forgets an id whose request was not acknowledged after all, so the
    /// sender's retry is stored.
    pub fn forget(&self, workspace: &str, id: &str) {
        let digest = digest(workspace, id);
        self.shard_of(digest).received.remove(&digest);
    }

    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.shard(i).received.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A panic under the lock leaves a consistent map: keep using it.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn shard_of(&self, digest: Digest) -> MutexGuard<'_, Shard> {
        self.shard((digest.1 >> 60) as usize % self.shards.len())
    }
}

impl Shard {
    fn remember(&mut self, digest: Digest, at: i64) {
        while self.received.len() >= self.capacity || self.order.len() >= self.capacity {
            self.drop_oldest();
        }
        self.order.push_back((at, digest));
        self.received.insert(digest, at);
    }

    fn expire(&mut self, cutoff: i64) {
        while self.order.front().is_some_and(|(at, _)| *at <= cutoff) {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((at, digest)) = self.order.pop_front() {
            // A forgotten and re-received id has a newer time: keep that one.
            if self.received.get(&digest) == Some(&at) {
                self.received.remove(&digest);
            }
        }
    }
}

/// The most entries a shard of `budget` bytes holds: its map's table has a
/// power-of-two number of slots of which 7/8 may be used (hashbrown's load
/// factor) and half of those are (see [`Shard::capacity`]), and its queue
/// one slot per entry.
fn shard_capacity(budget: usize) -> usize {
    let entries = |slots: usize| slots / 8 * 7 / 2;
    let bytes = |slots: usize| slots * MAP_SLOT_BYTES + entries(slots) * QUEUE_SLOT_BYTES;
    let mut slots = 16usize;
    while bytes(slots * 2) <= budget {
        slots *= 2;
    }
    entries(slots)
}

/// The digest of a (workspace, id) pair: each part prefixed by its length,
/// so no two pairs run together.
fn digest(workspace: &str, id: &str) -> Digest {
    let mut hasher = Xxh3::new();
    for part in [workspace, id] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let value = hasher.digest128();
    (value as u64, (value >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const HOUR: i64 = 3_600_000_000;
    const MIB: usize = 1 << 20;

    #[test]
    fn a_repeated_id_is_new_only_once_within_the_window() {
        let seen = Dedupe::new(Duration::from_secs(24 * 3600), MIB);
        assert!(seen.first_time("shop", "m1", 0));
        assert!(!seen.first_time("shop", "m1", HOUR));
        assert!(seen.first_time("other", "m1", HOUR), "workspaces are apart");
        assert!(
            seen.first_time("shop", "m1", 25 * HOUR),
            "the window has passed"
        );
    }

    #[test]
    fn parts_do_not_run_together() {
        assert_ne!(digest("ab", "c"), digest("a", "bc"));
        let seen = Dedupe::new(Duration::from_secs(3600), MIB);
        assert!(seen.first_time("ab", "c", 0));
        assert!(seen.first_time("a", "bc", 0));
    }

    #[test]
    fn forgotten_ids_are_stored_again() {
        let seen = Dedupe::new(Duration::from_secs(3600), MIB);
        assert!(seen.first_time("shop", "a", 0));
        seen.forget("shop", "a");
        assert!(seen.first_time("shop", "a", 1));
        seen.insert("shop", "b", 2);
        assert!(!seen.first_time("shop", "b", 3));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn memory_is_bounded_in_bytes_whatever_the_ids_cost() {
        let budget = 128 << 10;
        let seen = Dedupe::new(Duration::from_secs(3600), budget);
        let capacity = seen.capacity();
        let per_id = budget / capacity;
        assert!((48..=160).contains(&per_id), "{per_id} bytes per id");
        let long = "x".repeat(32 << 10);
        for i in 0..capacity * 3 {
            seen.insert("shop", &format!("{long}{i}"), i as i64);
        }
        assert!(seen.len() <= capacity, "{} > {capacity}", seen.len());
        assert!(
            seen.first_time("shop", &format!("{long}0"), 1),
            "the oldest were forgotten first"
        );
        let newest = format!("{long}{}", capacity * 3 - 1);
        assert!(!seen.first_time("shop", &newest, 2));
    }

    #[test]
    fn a_shard_never_grows_past_what_it_was_given() {
        let seen = Dedupe::new(Duration::from_secs(3600), MIB);
        let before: Vec<usize> = (0..SHARDS)
            .map(|i| seen.shard(i).received.capacity())
            .collect();
        for i in 0..seen.capacity() * 2 {
            seen.insert("shop", &i.to_string(), i as i64);
        }
        for (i, before) in before.into_iter().enumerate() {
            let after = seen.shard(i).received.capacity();
            assert!(after <= before, "shard {i} grew from {before} to {after}");
        }
    }

    #[test]
    fn the_budget_buys_whole_tables() {
        for budget in [1 << 10, 100_000, MIB, 256 * MIB / SHARDS] {
            let capacity = shard_capacity(budget);
            let slots = capacity * 2 / 7 * 8;
            assert!(slots.is_power_of_two(), "{budget}: {slots}");
            let bytes = slots * MAP_SLOT_BYTES + capacity * QUEUE_SLOT_BYTES;
            assert!(bytes <= budget || slots == 16, "{budget}: {bytes}");
        }
    }
}
