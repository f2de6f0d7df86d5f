//! `max_events_per_second`: a token bucket per write key (each workspace has
//! one), so one sender cannot take the WAL's whole throughput. A bucket
//! holds one second's worth of events and refills continuously; a request
//! takes one token per item, and one bigger than the bucket passes when the
//! bucket is full, leaving a debt the key pays off before its next request.
//! Over the rate, requests are answered 429 with `Retry-After`.
//!
//! The decision is a pure function of the bucket, the request and the clock
//! (microseconds), so it is tested with explicit times.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// One key's bucket: tokens left at a moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date (microseconds).
    at: i64,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(per_second: u32, now: i64) -> Bucket {
        Bucket {
            tokens: f64::from(per_second),
            at: now,
        }
    }

    /// The bucket refilled up to `now` (a clock that went back refills nothing).
    fn refilled(self, per_second: u32, now: i64) -> Bucket {
        let rate = f64::from(per_second);
        let elapsed = now.saturating_sub(self.at).max(0) as f64 / 1e6;
        Bucket {
            tokens: (self.tokens + elapsed * rate).min(rate),
            at: self.at.max(now),
        }
    }

    /// Whether `cost` events may go at `now`: the bucket after taking them,
    /// or how long until they may.
    pub fn take(self, per_second: u32, cost: u64, now: i64) -> Result<Bucket, Duration> {
        let rate = f64::from(per_second);
        let bucket = self.refilled(per_second, now);
        let needed = (cost as f64).min(rate);
        if bucket.tokens >= needed {
            return Ok(Bucket {
                tokens: bucket.tokens - cost as f64,
                at: bucket.at,
            });
        }
        Err(Duration::from_secs_f64((needed - bucket.tokens) / rate))
    }
}

/// Every write key's bucket.
#[derive(Debug)]
pub struct Limiter {
    /// `None`: no limit.
    per_second: Option<u32>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(per_second: Option<u32>) -> Limiter {
        Limiter {
            per_second,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` events from the bucket of each of `keys` at `now`, or
    /// from none of them: the longest wait when one is short.
    pub fn take(&self, keys: &[&str], cost: u64, now: i64) -> Result<(), Duration> {
        let Some(per_second) = self.per_second else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut taken = Vec::with_capacity(keys.len());
        let mut wait = Duration::ZERO;
        for key in keys {
            let bucket = buckets
                .get(*key)
                .copied()
                .unwrap_or_else(|| Bucket::full(per_second, now));
            match bucket.take(per_second, cost, now) {
                Ok(after) => taken.push((key.to_string(), after)),
                Err(until) => wait = wait.max(until),
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        buckets.extend(taken);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[test]
    fn a_full_bucket_holds_one_second_and_refills_continuously() {
        let bucket = Bucket::full(10, 0);
        let bucket = bucket.take(10, 10, 0).expect("a second's worth at once");
        assert_eq!(bucket.take(10, 1, 0), Err(Duration::from_millis(100)));
        let bucket = bucket.take(10, 5, SECOND / 2).expect("half refilled");
        assert!(bucket.take(10, 1, SECOND / 2).is_err());
        let later = bucket.take(10, 10, 100 * SECOND).expect("refilled");
        assert!(later.take(10, 1, 100 * SECOND).is_err(), "never above full");
    }

    #[test]
    fn a_request_bigger_than_the_bucket_passes_when_full_and_leaves_a_debt() {
        let bucket = Bucket::full(10, 0).take(10, 30, 0).expect("full bucket");
        assert_eq!(bucket.take(10, 1, 0), Err(Duration::from_millis(2100)));
        assert!(bucket.take(10, 1, 2 * SECOND).is_err());
        assert!(bucket.take(10, 1, 22 * SECOND / 10).is_ok());
    }

    #[test]
    fn a_clock_going_back_refills_nothing() {
        let bucket = Bucket::full(10, 5 * SECOND)
            .take(10, 10, 5 * SECOND)
            .unwrap();
        assert!(bucket.take(10, 1, 0).is_err());
        assert!(bucket.take(10, 1, 5 * SECOND + SECOND / 5).is_ok());
    }

    #[test]
    fn keys_have_their_own_buckets_and_fan_out_takes_from_all_or_none() {
        let limiter = Limiter::new(Some(5));
        assert!(limiter.take(&["a"], 5, 0).is_ok());
        assert!(limiter.take(&["b"], 5, 0).is_ok(), "b has its own bucket");
        assert!(limiter.take(&["a"], 1, 0).is_err());
        let limiter = Limiter::new(Some(5));
        assert!(limiter.take(&["a"], 4, 0).is_ok());
        assert!(limiter.take(&["a", "b"], 2, 0).is_err());
        assert!(limiter.take(&["b"], 5, 0).is_ok(), "b gave nothing above");
        assert!(Limiter::new(None).take(&["a"], u64::MAX, 0).is_ok());
    }
}
