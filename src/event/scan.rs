//! One scan of a JSON text's bytes, before any parser recurses into it or
//! the text is kept, for what serde_json's raw values let through and
//! every later reader of the stored JSON would refuse (so one event could
//! fail every query over it): nesting deeper than [`MAX_JSON_DEPTH`],
//! `\u` escapes that are not valid UTF-16 (a lone surrogate), and numbers
//! beyond the range of a 64-bit float (`1e999`: serde_json's raw values
//! check only their syntax). Every endpoint and every import line is held
//! to the same rules.

/// The deepest nesting of objects and arrays an event may have, the event
/// object itself counting as level 1. serde_json refuses 128 levels when it
/// builds values, so whatever is stored can always be read back.
pub const MAX_JSON_DEPTH: usize = 64;

/// What a scan found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    /// Nested deeper than the limit.
    TooDeep,
    /// A `\u` escape of half a surrogate pair, at this byte.
    LoneSurrogate(usize),
    /// A number no 64-bit float holds, starting at this byte.
    NumberOutOfRange(usize),
}

/// Where the scan is inside a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InString {
    No,
    Yes,
    /// Just after a backslash.
    Escape,
    /// Just after a high surrogate's escape: the low half must follow.
    NeedLow,
    /// After the backslash that should start the low half.
    NeedLowEscape,
}

/// The deepest nesting in `text` (stopping once past `limit`), or the
/// first problem.
fn scan(text: &[u8], limit: usize) -> Result<usize, Problem> {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut state = InString::No;
    let mut at = 0;
    while at < text.len() {
        if state == InString::Yes {
            // Most bytes are inside strings: jump to the next that matters.
            match memchr::memchr2(b'"', b'\\', &text[at..]) {
                Some(skip) => at += skip,
                None => break,
            }
        }
        let byte = text[at];
        state = match (state, byte) {
            (InString::No, b'"') => InString::Yes,
            (InString::No, b'-' | b'0'..=b'9') => {
                let end = number_end(text, at);
                if out_of_range(&text[at..end]) {
                    return Err(Problem::NumberOutOfRange(at));
                }
                at = end - 1;
                InString::No
            }
            (InString::No, b'{' | b'[') => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return Err(Problem::TooDeep);
                }
                InString::No
            }
            (InString::No, b'}' | b']') => {
                depth = depth.saturating_sub(1);
                InString::No
            }
            (InString::No, _) => InString::No,
            (InString::Yes, b'\\') => InString::Escape,
            (InString::Yes, b'"') => InString::No,
            (InString::Yes, _) => InString::Yes,
            (InString::Escape, b'u') => match unit(text, at + 1) {
                Some(0xD800..=0xDBFF) => {
                    at += 4;
                    InString::NeedLow
                }
                Some(0xDC00..=0xDFFF) => return Err(Problem::LoneSurrogate(at - 1)),
                _ => InString::Yes,
            },
            (InString::Escape, _) => InString::Yes,
            (InString::NeedLow, b'\\') => InString::NeedLowEscape,
            (InString::NeedLow, _) => return Err(Problem::LoneSurrogate(at)),
            (InString::NeedLowEscape, b'u') => match unit(text, at + 1) {
                Some(0xDC00..=0xDFFF) => {
                    at += 4;
                    InString::Yes
                }
                _ => return Err(Problem::LoneSurrogate(at - 1)),
            },
            (InString::NeedLowEscape, _) => return Err(Problem::LoneSurrogate(at - 1)),
        };
        at += 1;
    }
    Ok(deepest)
}

/// Where the number token starting at `at` ends (its bytes are digits,
/// signs, points and exponents; the JSON parser checks their syntax).
fn number_end(text: &[u8], at: usize) -> usize {
    text[at..]
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .map_or(text.len(), |length| at + length)
}

/// Whether a number token overflows a 64-bit float (then serde_json
/// refuses it as "number out of range" when it reads the stored value).
/// Only a token with an exponent, or with more digits than `f64::MAX` has,
/// can: the others are not parsed.
fn out_of_range(token: &[u8]) -> bool {
    const MAX_PLAIN_DIGITS: usize = 309;
    let exponent = token.iter().any(|b| matches!(b, b'e' | b'E'));
    if !exponent && token.len() <= MAX_PLAIN_DIGITS {
        return false;
    }
    std::str::from_utf8(token)
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .is_some_and(|number| number.is_infinite())
}

/// The UTF-16 code unit of the four hex digits at `at`, if they are.
fn unit(text: &[u8], at: usize) -> Option<u32> {
    let digits = text.get(at..at + 4)?;
    let digits = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

/// The deepest nesting in `text`, counting `{` and `[` outside strings, and
/// stopping as soon as it exceeds `limit` (so a hostile input costs no more
/// than a scan of its bytes). The text need not be valid JSON.
pub fn nesting_depth(text: &[u8], limit: usize) -> usize {
    match scan(text, limit) {
        Ok(deepest) => deepest,
        Err(Problem::TooDeep) => limit + 1,
        // Past a bad escape or number, the depth is not the question.
        Err(Problem::LoneSurrogate(_) | Problem::NumberOutOfRange(_)) => 0,
    }
}

/// Refuses `text` when it nests deeper than `limit` levels, holds a lone
/// surrogate escape or a number beyond a 64-bit float.
pub fn check_json(text: &str, limit: usize) -> Result<(), String> {
    match scan(text.as_bytes(), limit) {
        Ok(_) => Ok(()),
        Err(Problem::TooDeep) => Err(format!(
            "the JSON nests deeper than {limit} levels of objects and arrays"
        )),
        Err(Problem::LoneSurrogate(at)) => Err(format!(
            "invalid JSON: a \\u escape at byte {at} is half of a UTF-16 surrogate pair"
        )),
        Err(Problem::NumberOutOfRange(at)) => Err(format!(
            "invalid JSON: the number at byte {at} is beyond the range of a 64-bit float"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_skipped_to_their_quotes_and_escapes() {
        assert_eq!(nesting_depth(br#"{"a":"x{[\"{[","b":[{}]}"#, 10), 3);
        assert_eq!(nesting_depth(br#"{"a":"unterminated [[["#, 10), 1);
        assert_eq!(nesting_depth(br#"{"a":"ends in a backslash \"#, 10), 1);
        assert!(check_json(r#"{"long":"...\ud800 in the middle"}"#, 10).is_err());
        assert!(check_json(r#"{"k":"\ud83d\ude00","n":[1e999]}"#, 10).is_err());
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(nesting_depth(b"{}", 10), 1);
        assert_eq!(nesting_depth(br#"{"a":[{"b":1}],"c":{}}"#, 10), 3);
        assert_eq!(nesting_depth(br#"{"a":"[[[{{{"}"#, 10), 1);
        assert_eq!(nesting_depth(br#"{"a":"\"[[["}"#, 10), 1);
        assert_eq!(nesting_depth(br#"{"a":"\\"}"#, 10), 1);
        assert_eq!(nesting_depth(b"1", 10), 0);
    }

    #[test]
    fn deep_input_is_refused_without_reading_it_all() {
        let deep = format!("{}{}", "[".repeat(16_000), "]".repeat(16_000));
        assert_eq!(nesting_depth(deep.as_bytes(), 64), 65);
        let err = check_json(&deep, MAX_JSON_DEPTH).unwrap_err();
        assert!(err.contains("deeper than 64"), "{err}");
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(check_json(&ok, MAX_JSON_DEPTH).is_ok());
    }

    #[test]
    fn lone_surrogates_are_refused_and_pairs_kept() {
        // Found by fuzz/event_shapes: serde_json's raw values keep them, and
        // every reader of the stored JSON (serde_json, DataFusion's JSON
        // functions) refuses them.
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud800x"}"#,
            r#"{"a":"\ud800\n"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\uDBFF"}"#,
        ] {
            let err = check_json(bad, MAX_JSON_DEPTH).expect_err(bad);
            assert!(err.contains("surrogate"), "{bad}: {err}");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
        for good in [
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":"\u00e9\\ud800"}"#,
            r#"{"a":"\uD83D\uDE00 and \u0041"}"#,
            r#"{"\\":"\\\\"}"#,
        ] {
            assert!(check_json(good, MAX_JSON_DEPTH).is_ok(), "{good}");
            assert!(
                serde_json::from_str::<serde_json::Value>(good).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn numbers_beyond_a_float_are_refused_and_the_rest_kept() {
        // Found by fuzz/event_shapes: serde_json's raw values check a
        // number's syntax only, so `1524e2776691259` was stored, and no
        // reader of the stored JSON could read it back.
        let long = format!(r#"{{"a":{}}}"#, "9".repeat(400));
        for bad in [
            r#"{"a":1e999}"#,
            r#"{"a":-1E+309}"#,
            r#"{"a":[1,2,1524e2776691259]}"#,
            r#"{"sentAt": 1524e2776691259, "event": "e"}"#,
            long.as_str(),
        ] {
            let err = check_json(bad, MAX_JSON_DEPTH).expect_err(bad);
            assert!(
                err.contains("beyond the range of a 64-bit float"),
                "{bad}: {err}"
            );
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
        let wide = format!(r#"{{"a":{}}}"#, "9".repeat(300));
        for good in [
            r#"{"a":1e308,"b":-1.7976931348623157e308,"c":1e-999,"d":-0.5}"#,
            r#"{"a":"1e999","b":12345678901234567890123}"#,
            r#"{"1e999":[0,-1,2.5E3]}"#,
            wide.as_str(),
        ] {
            assert!(check_json(good, MAX_JSON_DEPTH).is_ok(), "{good}");
            assert!(
                serde_json::from_str::<serde_json::Value>(good).is_ok(),
                "{good}"
            );
        }
    }
}
