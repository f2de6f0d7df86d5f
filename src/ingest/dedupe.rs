//! Idempotent retries (docs/reference.md "Ingest API"): the `event_id`s / `messageId`s a workspace
//! received within the dedupe window, so a repeated id is stored once.
//!
//! The set is rebuilt at startup from the events table (after the WAL has
//! been replayed into it) and fed by every acknowledged request. It holds at
//! most [`MAX_REMEMBERED`] ids; past that the oldest are forgotten first.

use std::collections::{HashMap, VecDeque};

/// The most ids remembered at once (bounded memory; about 100 bytes each).
pub const MAX_REMEMBERED: usize = 5_000_000;

/// Ids seen per workspace, with when they were received (microseconds).
#[derive(Debug)]
pub struct Seen {
    window_micros: i64,
    max: usize,
    received: HashMap<(String, String), i64>,
    /// Arrival order, for expiry: (received_at, workspace, id).
    order: VecDeque<(i64, String, String)>,
}

impl Seen {
    pub fn new(window: std::time::Duration, max: usize) -> Seen {
        Seen {
            window_micros: i64::try_from(window.as_micros()).unwrap_or(i64::MAX),
            max,
            received: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// True when `id` was not received by `workspace` within the window
    /// before `now`; it is then remembered as received at `now`.
    pub fn first_time(&mut self, workspace: &str, id: &str, now: i64) -> bool {
        self.expire(now);
        let key = (workspace.to_string(), id.to_string());
        if self.received.contains_key(&key) {
            return false;
        }
        self.remember(key, now);
        true
    }

    /// Remembers an id stored earlier (at startup, from the table).
    pub fn insert(&mut self, workspace: &str, id: &str, received_at: i64) {
        let key = (workspace.to_string(), id.to_string());
        if !self.received.contains_key(&key) {
            self.remember(key, received_at);
        }
    }

    /// Forgets an id whose request was not acknowledged after all, so the
    /// sender's retry is stored.
    pub fn forget(&mut self, workspace: &str, id: &str) {
        self.received
            .remove(&(workspace.to_string(), id.to_string()));
    }

    pub fn len(&self) -> usize {
        self.received.len()
    }

    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    fn remember(&mut self, key: (String, String), at: i64) {
        self.order.push_back((at, key.0.clone(), key.1.clone()));
        self.received.insert(key, at);
        while self.received.len() > self.max {
            self.drop_oldest();
        }
    }

    fn expire(&mut self, now: i64) {
        let cutoff = now.saturating_sub(self.window_micros);
        while self.order.front().is_some_and(|(at, _, _)| *at <= cutoff) {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((at, workspace, id)) = self.order.pop_front() {
            let key = (workspace, id);
            // A forgotten and re-received id has a newer time: keep that one.
            if self.received.get(&key) == Some(&at) {
                self.received.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn a_repeated_id_is_new_only_once_within_the_window() {
        let mut seen = Seen::new(Duration::from_secs(24 * 3600), 100);
        assert!(seen.first_time("shop", "m1", 0));
        assert!(!seen.first_time("shop", "m1", HOUR));
        assert!(seen.first_time("other", "m1", HOUR), "workspaces are apart");
        assert!(
            seen.first_time("shop", "m1", 25 * HOUR),
            "the window has passed"
        );
    }

    #[test]
    fn forgotten_ids_are_stored_again_and_memory_is_bounded() {
        let mut seen = Seen::new(Duration::from_secs(3600), 2);
        assert!(seen.first_time("shop", "a", 0));
        seen.forget("shop", "a");
        assert!(seen.first_time("shop", "a", 1));
        seen.insert("shop", "b", 2);
        seen.insert("shop", "c", 3);
        assert_eq!(seen.len(), 2);
        assert!(seen.first_time("shop", "a", 4), "the oldest was forgotten");
    }
}
