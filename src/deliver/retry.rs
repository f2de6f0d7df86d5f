//! The retry decision of one attempt, as pure functions (no I/O, no clock):
//! an HTTP answer becomes a [`RetryAction`], a retry gets an exponential
//! backoff with jitter that never undercuts `Retry-After`, and a delivery
//! that keeps failing for its retry period, counted from its first attempt
//! (after it was planned or redelivered), is dead: a delivery first tried
//! after an outage longer than the period is retried, not given up on.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::ledger::attempts::Status;

/// How long a failing delivery is retried before it is dead-lettered
/// (docs/reference.md "Deliveries": a configurable period, 24h by default).
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// The first retry waits about this long; each later one twice as long…
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);

/// …up to this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60 * 60);

/// A receiver's `Retry-After` longer than this is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAction {
    /// Delivered: never send it again.
    Successful,
    /// A failure that may pass (5xx, 408, 429, timeouts, connection errors);
    /// `after` is the receiver's `Retry-After`, if it gave one.
    Retry { after: Option<Duration> },
    /// A failure that sending again cannot fix (other 4xx, 3xx, a bad payload).
    DontRetry { reason: String },
}

/// The decision for an HTTP answer with `status` and its `Retry-After`
/// header (seconds or an HTTP-date, read against `now`).
pub fn classify_http(status: u16, retry_after: Option<&str>, now: DateTime<Utc>) -> RetryAction {
    match status {
        200..=299 => RetryAction::Successful,
        408 | 429 | 500..=599 => RetryAction::Retry {
            after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        300..=399 => RetryAction::DontRetry {
            reason: format!("HTTP {status}: redirects are not followed; configure the final URL"),
        },
        _ => RetryAction::DontRetry {
            reason: format!("HTTP {status}: the receiver refused the delivery"),
        },
    }
}

/// `Retry-After` as a wait: delay-seconds, or an HTTP-date (a date in the
/// past means "now"). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The wait before retrying after the `tries`-th failed try (1-based):
/// `BACKOFF_BASE · 2^(tries-1)` capped at `BACKOFF_CAP`, with "equal
/// jitter" (half fixed, half scaled by `jitter` in [0, 1)), and never less
/// than the receiver's `retry_after`.
pub fn next_attempt(tries: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let doublings = tries.saturating_sub(1).min(31);
    let backoff = BACKOFF_BASE
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_CAP);
    let half = backoff / 2;
    let wait = half + half.mul_f64(jitter.clamp(0.0, 1.0));
    wait.max(retry_after.unwrap_or(Duration::ZERO))
}

/// A deterministic jitter in [0, 1) for one delivery's `tries`-th retry:
/// retries of many deliveries spread out, and a run pinned with `--now`
/// schedules the same retries on every machine.
pub fn jitter_for(delivery_id: &str, tries: u32) -> f64 {
    let key = format!("{delivery_id}\u{1f}{tries}");
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Where a delivery stands after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Added to the attempt's error when the verdict is `dead` for a reason
    /// the attempt itself did not give.
    pub note: Option<String>,
}

/// What a delivery's retry schedule says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Its first attempt since it was planned or reset by `redeliver`;
    /// `None` when this attempt is that first one. Its retry period
    /// starts there.
    pub first_try: Option<DateTime<Utc>>,
    /// Failed tries since then, this one included.
    pub tries: u32,
    pub retry_period: Duration,
}

/// The verdict on an attempt made at `now`: delivered, dead (refused, or
/// failing for the whole retry period), or failed with its next try.
pub fn decide(
    action: &RetryAction,
    schedule: Schedule,
    jitter: f64,
    now: DateTime<Utc>,
) -> Verdict {
    let verdict = |status, next_attempt_at, note| Verdict {
        status,
        next_attempt_at,
        note,
    };
    match action {
        RetryAction::Successful => verdict(Status::Delivered, None, None),
        RetryAction::DontRetry { .. } => verdict(Status::Dead, None, None),
        RetryAction::Retry { after } => {
            let since = schedule.first_try.unwrap_or(now);
            let failing_for = (now - since).to_std().unwrap_or(Duration::ZERO);
            if schedule.first_try.is_some() && failing_for >= schedule.retry_period {
                let note = format!(
                    "gave up: still failing {} after its first attempt",
                    humanize(schedule.retry_period)
                );
                return verdict(Status::Dead, None, Some(note));
            }
            let wait = next_attempt(schedule.tries, *after, jitter);
            let next = chrono::Duration::from_std(wait)
                .ok()
                .and_then(|w| now.checked_add_signed(w))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            verdict(Status::Failed, Some(next), None)
        }
    }
}

/// `24h`, `90m`, `30s`: a period as a person writes it.
fn humanize(period: Duration) -> String {
    let seconds = period.as_secs();
    if seconds >= 3600 && seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else if seconds >= 60 && seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn only_2xx_is_success_and_only_transient_failures_are_retried() {
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(classify_http(200, None, now), RetryAction::Successful);
        assert_eq!(classify_http(204, None, now), RetryAction::Successful);
        for transient in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                classify_http(transient, None, now),
                RetryAction::Retry { after: None },
                "{transient}"
            );
        }
        for refused in [301, 302, 400, 401, 403, 404, 410, 422] {
            assert!(
                matches!(
                    classify_http(refused, None, now),
                    RetryAction::DontRetry { .. }
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = at("2015-10-21T07:27:00Z");
        let five = Some(Duration::from_secs(5));
        assert_eq!(
            classify_http(429, Some("5"), now),
            RetryAction::Retry { after: five }
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("99999999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_respects_retry_after() {
        for tries in 1..40 {
            let full = BACKOFF_BASE
                .saturating_mul(1 << (tries - 1).min(31))
                .min(BACKOFF_CAP);
            let low = next_attempt(tries, None, 0.0);
            let high = next_attempt(tries, None, 0.999_999);
            assert_eq!(low, full / 2, "tries {tries}");
            assert!(high <= full && high > low, "tries {tries}: {high:?}");
        }
        assert_eq!(next_attempt(1, None, 0.0), Duration::from_millis(500));
        assert_eq!(next_attempt(5, None, 0.0), Duration::from_secs(8));
        let retry_after = Some(Duration::from_secs(120));
        assert_eq!(next_attempt(1, retry_after, 0.5), Duration::from_secs(120));
        assert_eq!(next_attempt(30, retry_after, 0.0), BACKOFF_CAP / 2);
    }

    #[test]
    fn jitter_is_deterministic_and_spread() {
        assert_eq!(jitter_for("d1", 1), jitter_for("d1", 1));
        let values: Vec<f64> = (0..1000).map(|i| jitter_for(&format!("d{i}"), 1)).collect();
        assert!(values.iter().all(|j| (0.0..1.0).contains(j)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    #[test]
    fn a_delivery_failing_for_its_whole_retry_period_is_dead() {
        let planned = at("2026-01-01T00:00:00Z");
        let schedule = Schedule {
            first_try: Some(planned),
            tries: 3,
            retry_period: DEFAULT_RETRY_PERIOD,
        };
        let retry = RetryAction::Retry { after: None };
        let soon = decide(&retry, schedule, 0.0, at("2026-01-01T01:00:00Z"));
        assert_eq!(soon.status, Status::Failed);
        assert_eq!(soon.next_attempt_at, Some(at("2026-01-01T01:00:02Z")));
        let late = decide(&retry, schedule, 0.0, at("2026-01-02T00:00:00Z"));
        assert_eq!(late.status, Status::Dead);
        assert!(late.note.unwrap().contains("24h"));
        let refused = RetryAction::DontRetry {
            reason: "HTTP 400".into(),
        };
        assert_eq!(
            decide(&refused, schedule, 0.0, planned).status,
            Status::Dead
        );
        assert_eq!(
            decide(&RetryAction::Successful, schedule, 0.0, late_time()).status,
            Status::Delivered
        );
    }

    #[test]
    fn after_an_outage_longer_than_the_retry_period_a_delivery_is_still_tried_and_retried() {
        let retry = RetryAction::Retry { after: None };
        let back = at("2026-01-05T00:00:00Z");
        let first = Schedule {
            first_try: None,
            tries: 1,
            retry_period: DEFAULT_RETRY_PERIOD,
        };
        let verdict = decide(&retry, first, 0.0, back);
        assert_eq!(
            verdict.status,
            Status::Failed,
            "planned days ago, tried now"
        );
        assert_eq!(verdict.next_attempt_at, Some(at("2026-01-05T00:00:00.5Z")));
        let second = Schedule {
            first_try: Some(back),
            tries: 2,
            ..first
        };
        let soon = decide(&retry, second, 0.0, at("2026-01-05T00:00:01Z"));
        assert_eq!(soon.status, Status::Failed);
        let day_later = decide(&retry, second, 0.0, at("2026-01-06T00:00:00Z"));
        assert_eq!(day_later.status, Status::Dead);
        assert!(
            day_later
                .note
                .unwrap()
                .contains("24h after its first attempt")
        );
        let period_zero = Schedule {
            retry_period: Duration::ZERO,
            ..second
        };
        assert_eq!(
            decide(&retry, period_zero, 0.0, back).status,
            Status::Dead,
            "a zero period gives up at the second try"
        );
    }

    fn late_time() -> DateTime<Utc> {
        at("2030-01-01T00:00:00Z")
    }
}
