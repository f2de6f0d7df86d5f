//! Per-action pacing (docs/reference.md "Deliveries"): an action's
//! `rate_limit`, and slowing down after a receiver's `429`.
//!
//! One [`Bucket`] per (workspace, flow, action) and process. A bucket lets
//! one request go at a time, at least `interval` after the one before (a
//! token bucket holding one token), where `interval` is the action's rate
//! split over the live replicas (`replicas`): exact within a process,
//! approximate across replicas. A `429` pauses the whole action for the
//! receiver's `Retry-After` (else 1 s, doubling while 429s keep coming, up
//! to [`MAX_THROTTLE`]); a success ends the doubling. Everything here is
//! a pure function of the bucket and an explicit monotonic time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::flow::rate::RateLimit;

/// The pause after a `429` without `Retry-After`, doubled per `429` in a row…
pub const THROTTLE_BASE: Duration = Duration::from_secs(1);

/// …up to this; a `Retry-After` is honoured up to `retry::MAX_RETRY_AFTER`.
pub const MAX_THROTTLE: Duration = Duration::from_secs(60);

/// Where one action's pacing stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// The action's rate, as its latest delivery's payload gave it.
    pub rate: Option<RateLimit>,
    /// No request before this (the last one plus the interval).
    pub next_free: Option<Instant>,
    /// A receiver's `429` holds every request of the action until this.
    pub paused_until: Option<Instant>,
    /// `429`s in a row.
    pub throttled: u32,
}

impl Bucket {
    /// The time between two requests with `share` live replicas, if limited.
    pub fn interval(&self, share: u32) -> Option<Duration> {
        self.rate.map(|rate| rate.interval(share))
    }

    /// The earliest a request may go, at `now`.
    pub fn ready_at(&self, now: Instant) -> Instant {
        [Some(now), self.next_free, self.paused_until]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(now)
    }
}

/// Lets a request go at `now` if the bucket allows (and books the next
/// one's earliest time), else says when it may go.
pub fn try_send(bucket: &mut Bucket, share: u32, now: Instant) -> Result<(), Instant> {
    let ready = bucket.ready_at(now);
    if ready > now {
        return Err(ready);
    }
    if let Some(interval) = bucket.interval(share) {
        bucket.next_free = Some(now + interval);
    }
    Ok(())
}

/// How many requests the bucket can let go from `now` until `now +
/// window`: `None` when it does not limit them (no rate; a pause ending
/// within the window only delays them).
pub fn room(bucket: &Bucket, share: u32, now: Instant, window: Duration) -> Option<usize> {
    let end = now + window;
    let start = bucket.ready_at(now);
    let Some(interval) = bucket.interval(share) else {
        return (start > end).then_some(0);
    };
    if start > end {
        return Some(0);
    }
    let span = end - start;
    let nanos = interval.as_nanos().max(1);
    Some(usize::try_from(span.as_nanos() / nanos + 1).unwrap_or(usize::MAX))
}

/// A `429` at `now`: the action pauses for `retry_after`, else for the
/// doubling throttle.
pub fn throttle(bucket: &mut Bucket, retry_after: Option<Duration>, now: Instant) {
    bucket.throttled = bucket.throttled.saturating_add(1);
    let doubled = THROTTLE_BASE
        .saturating_mul(1u32 << (bucket.throttled - 1).min(16))
        .min(MAX_THROTTLE);
    let pause = retry_after.unwrap_or(doubled);
    let until = now + pause;
    bucket.paused_until = Some(bucket.paused_until.map_or(until, |p| p.max(until)));
}

/// A success: the next `429` starts the doubling again.
pub fn relieve(bucket: &mut Bucket) {
    bucket.throttled = 0;
}

/// Which action a bucket paces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionKey {
    pub workspace: String,
    pub flow: String,
    pub action: String,
}

/// A process's buckets.
#[derive(Debug, Default)]
pub struct Pacer {
    buckets: HashMap<ActionKey, Bucket>,
}

impl Pacer {
    pub fn bucket(&mut self, key: &ActionKey) -> &mut Bucket {
        self.buckets.entry(key.clone()).or_default()
    }

    /// The actions of `workspace` whose requests are limited in the next
    /// `window`, with how many of their due deliveries a batch should read:
    /// the room, plus one that the batch defers to show there is more
    /// (none when there is no room).
    pub fn caps(
        &self,
        workspace: &str,
        share: u32,
        now: Instant,
        window: Duration,
    ) -> Vec<(ActionKey, usize)> {
        let mut caps: Vec<(ActionKey, usize)> = self
            .buckets
            .iter()
            .filter(|(key, _)| key.workspace == workspace)
            .filter_map(|(key, b)| room(b, share, now, window).map(|n| (key.clone(), n)))
            .map(|(key, n)| (key, if n == 0 { 0 } else { n.saturating_add(1) }))
            .collect();
        caps.sort();
        caps
    }

    /// When the first of `keys` that has no room now gets some.
    pub fn next_room(&self, keys: &[ActionKey], now: Instant) -> Option<Instant> {
        keys.iter()
            .filter_map(|key| self.buckets.get(key))
            .map(|b| b.ready_at(now))
            .filter(|at| *at > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(rate: &str) -> Bucket {
        Bucket {
            rate: Some(RateLimit::parse(rate).unwrap()),
            ..Bucket::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_rate_spaces_requests_by_its_interval() {
        let t0 = Instant::now();
        let mut bucket = limited("20/s");
        assert_eq!(try_send(&mut bucket, 1, t0), Ok(()));
        assert_eq!(try_send(&mut bucket, 1, t0), Err(t0 + ms(50)));
        assert_eq!(try_send(&mut bucket, 1, t0 + ms(49)), Err(t0 + ms(50)));
        assert_eq!(try_send(&mut bucket, 1, t0 + ms(50)), Ok(()));
        assert_eq!(
            try_send(&mut bucket, 1, t0 + ms(500)),
            Ok(()),
            "no burst is saved up"
        );
        assert_eq!(try_send(&mut bucket, 1, t0 + ms(510)), Err(t0 + ms(550)));
    }

    #[test]
    fn replicas_split_the_rate() {
        let t0 = Instant::now();
        let mut bucket = limited("20/s");
        assert_eq!(try_send(&mut bucket, 2, t0), Ok(()));
        assert_eq!(try_send(&mut bucket, 2, t0 + ms(50)), Err(t0 + ms(100)));
    }

    #[test]
    fn an_unlimited_action_always_sends_until_a_429() {
        let t0 = Instant::now();
        let mut bucket = Bucket::default();
        for _ in 0..100 {
            assert_eq!(try_send(&mut bucket, 1, t0), Ok(()));
        }
        throttle(&mut bucket, None, t0);
        assert_eq!(try_send(&mut bucket, 1, t0), Err(t0 + ms(1000)));
        throttle(&mut bucket, None, t0);
        assert_eq!(try_send(&mut bucket, 1, t0), Err(t0 + ms(2000)), "doubled");
        relieve(&mut bucket);
        throttle(&mut bucket, None, t0);
        assert_eq!(
            try_send(&mut bucket, 1, t0),
            Err(t0 + ms(2000)),
            "a shorter pause never shortens one in force"
        );
        assert_eq!(bucket.throttled, 1, "a success restarted the doubling");
        for _ in 0..30 {
            throttle(&mut bucket, None, t0 + ms(2000));
        }
        assert_eq!(bucket.ready_at(t0 + ms(2000)), t0 + ms(2000) + MAX_THROTTLE);
    }

    #[test]
    fn retry_after_pauses_the_whole_action() {
        let t0 = Instant::now();
        let mut bucket = limited("100/s");
        try_send(&mut bucket, 1, t0).unwrap();
        throttle(&mut bucket, Some(Duration::from_secs(5)), t0 + ms(3));
        assert_eq!(try_send(&mut bucket, 1, t0 + ms(10)), Err(t0 + ms(5003)));
        assert_eq!(try_send(&mut bucket, 1, t0 + ms(5003)), Ok(()));
    }

    #[test]
    fn room_counts_the_requests_a_window_can_take() {
        let t0 = Instant::now();
        let mut bucket = limited("20/s");
        assert_eq!(
            room(&bucket, 1, t0, ms(2000)),
            Some(41),
            "at 0, 50, …, 2000 ms"
        );
        assert_eq!(room(&bucket, 2, t0, ms(2000)), Some(21));
        bucket.next_free = Some(t0 + ms(1900));
        assert_eq!(room(&bucket, 1, t0, ms(2000)), Some(3));
        bucket.next_free = Some(t0 + ms(2100));
        assert_eq!(room(&bucket, 1, t0, ms(2000)), Some(0));
        let mut open = Bucket::default();
        assert_eq!(room(&open, 1, t0, ms(2000)), None);
        throttle(&mut open, Some(Duration::from_secs(1)), t0);
        assert_eq!(
            room(&open, 1, t0, ms(2000)),
            None,
            "a pause within the window"
        );
        throttle(&mut open, Some(Duration::from_secs(9)), t0);
        assert_eq!(room(&open, 1, t0, ms(2000)), Some(0));
    }

    #[test]
    fn the_pacer_caps_one_workspaces_limited_actions() {
        let t0 = Instant::now();
        let key = |workspace: &str, action: &str| ActionKey {
            workspace: workspace.into(),
            flow: "f".into(),
            action: action.into(),
        };
        let mut pacer = Pacer::default();
        *pacer.bucket(&key("shop", "slow")) = limited("1/s");
        pacer.bucket(&key("shop", "open"));
        *pacer.bucket(&key("other", "slow")) = limited("1/s");
        assert_eq!(
            pacer.caps("shop", 1, t0, ms(500)),
            [(key("shop", "slow"), 2)],
            "room for one, and one more to show there is more"
        );
        try_send(pacer.bucket(&key("shop", "slow")), 1, t0).unwrap();
        assert_eq!(
            pacer.caps("shop", 1, t0, ms(500)),
            [(key("shop", "slow"), 0)]
        );
        assert_eq!(
            pacer.next_room(&[key("shop", "slow"), key("shop", "open")], t0),
            Some(t0 + ms(1000))
        );
    }
}
