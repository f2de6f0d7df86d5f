//! Durations as people write them in config and file headers: `30s`,
//! `15m`, `24h`, `7d`, `2w`, `500ms`.

use std::time::Duration;

/// Parses durations like `30s`, `15m`, `24h`, `7d`, `2w`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: ms, s, m, h, d or w (e.g. \"7d\")"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"30s\", \"24h\" or \"7d\""))?;
    let seconds = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use ms, s, m, h, d or w)"
            ));
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

/// Writes a duration as people would: the largest unit it is a whole
/// number of (`60s` is `1m`, `1500ms` stays `1500ms`).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs();
    let units = [(604_800, "w"), (86_400, "d"), (3600, "h"), (60, "m")];
    for (size, unit) in units {
        if seconds >= size && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("d").is_err());
    }

    #[test]
    fn durations_print_as_they_are_written() {
        for text in [
            "30s", "1m", "36h", "3d", "2w", "500ms", "90s", "1500ms", "0s",
        ] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(format_duration(parsed), text);
        }
    }
}
