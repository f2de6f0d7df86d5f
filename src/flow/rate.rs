//! An action's `rate_limit` (docs/reference.md "Flows"): at most `count`
//! requests per second, minute or hour, written `"50/s"`, `"300/m"`,
//! `"1000/h"`. The delivery worker paces the action by it (`deliver::pace`).

use std::fmt;
use std::time::Duration;

/// At most `count` deliveries of an action per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Per,
}

/// The period of a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
        })
    }

    fn unit(self) -> &'static str {
        match self {
            Per::Second => "s",
            Per::Minute => "m",
            Per::Hour => "h",
        }
    }
}

impl RateLimit {
    /// Reads `"N/s"`, `"N/m"` or `"N/h"` (N a whole number from 1).
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let (count, unit) = text.trim().split_once('/').ok_or_else(|| {
            format!("{text:?} is not a rate: write requests per unit, as \"50/s\", \"300/m\" or \"1000/h\"")
        })?;
        let count: u32 = count.trim().parse().map_err(|_| {
            format!(
                "{text:?}: {:?} is not a whole number of requests",
                count.trim()
            )
        })?;
        if count == 0 {
            return Err(format!(
                "{text:?}: at least 1 request per unit (leave rate_limit out for no limit)"
            ));
        }
        let per = match unit.trim() {
            "s" => Per::Second,
            "m" => Per::Minute,
            "h" => Per::Hour,
            other => {
                return Err(format!("{text:?}: unknown unit {other:?} (use s, m or h)"));
            }
        };
        Ok(RateLimit { count, per })
    }

    /// The time between two requests when `share` workers split the rate
    /// evenly: `per × share / count`.
    pub fn interval(self, share: u32) -> Duration {
        self.per.duration().saturating_mul(share.max(1)) / self.count
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_per_second_minute_and_hour() {
        let fifty = RateLimit::parse("50/s").unwrap();
        assert_eq!(fifty.interval(1), Duration::from_millis(20));
        assert_eq!(fifty.interval(2), Duration::from_millis(40));
        assert_eq!(fifty.to_string(), "50/s");
        assert_eq!(
            RateLimit::parse(" 300 / m ").unwrap().interval(1),
            Duration::from_millis(200)
        );
        assert_eq!(
            RateLimit::parse("1/h").unwrap().interval(1),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn bad_rates_say_why() {
        for (text, why) in [
            ("50", "not a rate"),
            ("fast/s", "whole number"),
            ("0/s", "at least 1"),
            ("-1/s", "whole number"),
            ("2.5/s", "whole number"),
            ("5/d", "unknown unit"),
        ] {
            let e = RateLimit::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
