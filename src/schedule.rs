//! Trigger schedules: 5-field crontab, 6-field crontab with seconds, or
//! `every 30s`. Pure values, so "is this due at t?" is testable without I/O.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// When a trigger runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron(Box<cron::Schedule>),
    Every(Duration),
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        if let Some(interval) = text.strip_prefix("every ") {
            let every = crate::duration::parse_duration(interval)
                .map_err(|e| format!("{text:?} is not a schedule: {e}"))?;
            if every.is_zero() {
                return Err(format!("{text:?}: the interval must be more than zero"));
            }
            return Ok(Schedule::Every(every));
        }
        let fields = text.split_whitespace().count();
        let six_field = match fields {
            5 => format!("0 {text}"),
            6 => text.to_string(),
            _ => {
                return Err(format!(
                    "{text:?} is not a schedule: use 5 crontab fields (\"*/5 * * * *\"), 6 with seconds, or \"every 30s\""
                ));
            }
        };
        cron::Schedule::from_str(&six_field)
            .map(|s| Schedule::Cron(Box::new(s)))
            .map_err(|e| format!("{text:?} is not a valid crontab: {e}"))
    }
}

impl Schedule {
    /// The first time strictly after `after` that this schedule fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(cron) => cron.after(&after).next(),
            Schedule::Every(every) => chrono::Duration::from_std(*every).ok().map(|d| after + d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn five_field_crontab_fires_on_the_minute() {
        let s: Schedule = "*/5 * * * *".parse().unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:01:30Z")),
            Some(at("2026-01-01T10:05:00Z"))
        );
    }

    #[test]
    fn six_field_and_every() {
        let s: Schedule = "*/10 * * * * *".parse().unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:00:01Z")),
            Some(at("2026-01-01T10:00:10Z"))
        );
        let e: Schedule = "every 30s".parse().unwrap();
        assert_eq!(
            e.next_after(at("2026-01-01T10:00:00Z")),
            Some(at("2026-01-01T10:00:30Z"))
        );
    }

    #[test]
    fn rejects_nonsense() {
        assert!("every day".parse::<Schedule>().is_err());
        assert!("every 0s".parse::<Schedule>().is_err());
        assert!("61 * * * *".parse::<Schedule>().is_err());
        assert!("* *".parse::<Schedule>().is_err());
    }
}
